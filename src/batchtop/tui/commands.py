"""The command palette's provider, built from the same registry as the key bindings."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from batchtop.tui.registry import ACTIONS, ConsoleAction, key_label

if TYPE_CHECKING:  # pragma: no cover
    from batchtop.tui.screens.main import MainScreen


def _title(action: ConsoleAction) -> str:
    return f"{action.label} ({key_label(action)})"


class ConsoleCommands(Provider):
    """Every console action by name; running one is the same as pressing its key."""

    def _target(self) -> MainScreen | None:
        """The main screen, wherever the palette was opened from."""
        from batchtop.tui.screens.main import MainScreen

        return next((s for s in reversed(self.app.screen_stack) if isinstance(s, MainScreen)), None)

    async def _run(self, action: ConsoleAction) -> None:
        target = self._target()
        if target is not None:
            if target is not self.app.screen:
                self.app.notify("close this screen first (escape) to use the main screen's actions", severity="warning")
                return
            await target.run_action(action.action)

    async def discover(self) -> Hits:
        for action in ACTIONS:
            yield DiscoveryHit(_title(action), partial(self._run, action), help=action.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for action in ACTIONS:
            text = f"{_title(action)} {action.help}"
            score = max(matcher.match(_title(action)), matcher.match(action.help) * 0.8)
            if score > 0:
                yield Hit(score, matcher.highlight(_title(action)), partial(self._run, action), text=text, help=action.help)
