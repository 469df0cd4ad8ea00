"""Output validation: `output = "json"` / `output_schema` per buffer, on each provider's response shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchtop.config import Config, ConfigError, load_config, parse_config
from batchtop.engine.output_checks import output_rule, validate_output

CHAT = "/v1/chat/completions"
SCHEMA = {
    "type": "object",
    "required": ["answer"],
    "properties": {"answer": {"type": "string"}},
}


def chat(content: str | None, finish: str = "stop", refusal: str | None = None) -> dict:
    return {
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": content, "refusal": refusal}}],
    }


def anthropic(*texts: str, stop: str = "end_turn") -> dict:
    blocks: list[dict] = [{"type": "thinking", "thinking": "hmm"}] + [{"type": "text", "text": t} for t in texts]
    return {"type": "message", "role": "assistant", "content": blocks, "stop_reason": stop}


def responses(*texts: str) -> dict:
    return {
        "object": "response",
        "status": "completed",
        "output": [
            {"type": "reasoning", "summary": []},
            {"type": "message", "content": [{"type": "output_text", "text": t} for t in texts]},
        ],
    }


@pytest.fixture
def config(tmp_path: Path) -> Config:
    conf_dir = tmp_path / "conf"
    (conf_dir / "schemas").mkdir(parents=True)
    (conf_dir / "schemas" / "answer.json").write_text(json.dumps(SCHEMA))
    path = conf_dir / "config.toml"
    path.write_text(
        "[[buffers]]\nprovider = \"openai\"\noutput = \"json\"\n\n"
        "[[buffers]]\nmodel = \"gpt-4o-mini\"\noutput_schema = \"schemas/answer.json\"\n\n"
        "[[buffers]]\nmodel = \"gpt-4.1-nano\"\noutput = \"text\"\n\n"
        "[[buffers]]\nprovider = \"anthropic\"\noutput_schema = \"schemas/answer.json\"\n"
    )
    return load_config(path)


def test_schema_path_is_relative_to_the_config_file(config: Config, tmp_path: Path) -> None:
    rule = output_rule(config, "openai", CHAT, "gpt-4o-mini")
    assert rule is not None and rule.kind == "json"
    assert rule.schema_path == (tmp_path / "conf" / "schemas" / "answer.json").resolve()
    assert output_rule(config, "openai", CHAT, "gpt-4o") == type(rule)("json")
    assert output_rule(config, "openai", CHAT, "gpt-4.1-nano") == type(rule)("text")
    assert output_rule(Config(), "openai", CHAT, "gpt-4o") is None


def test_json_output_chat(config: Config) -> None:
    assert validate_output(config, "openai", CHAT, "gpt-4o", chat('{"a": [1, 2]}')) is None
    assert validate_output(config, "openai", CHAT, "gpt-4o", chat('  {"a": 1}\n')) is None
    problem = validate_output(config, "openai", CHAT, "gpt-4o", chat("Sure! Here is your JSON: {"))
    assert problem is not None and problem.startswith("output is not valid JSON")
    cut = validate_output(config, "openai", CHAT, "gpt-4o", chat('{"a": "unfinish', finish="length"))
    assert cut is not None and "cut short at the token limit" in cut
    refused = validate_output(config, "openai", CHAT, "gpt-4o", chat(None, refusal="I can't help with that"))
    assert refused == "no JSON output: the model refused: I can't help with that"


def test_schema_output(config: Config) -> None:
    assert validate_output(config, "openai", CHAT, "gpt-4o-mini", chat('{"answer": "42"}')) is None
    wrong_type = validate_output(config, "openai", CHAT, "gpt-4o-mini", chat('{"answer": 42}'))
    assert wrong_type == "output does not match answer.json at $.answer: 42 is not of type 'string'"
    missing = validate_output(config, "openai", CHAT, "gpt-4o-mini", chat("{}"))
    assert missing is not None and "'answer' is a required property" in missing
    not_json = validate_output(config, "openai", CHAT, "gpt-4o-mini", chat("answer: 42"))
    assert not_json is not None and not_json.startswith("output is not valid JSON")


def test_text_rule_and_unchecked_buffers(config: Config) -> None:
    assert validate_output(config, "openai", CHAT, "gpt-4.1-nano", chat("plain prose")) is None
    assert validate_output(Config(), "openai", CHAT, "gpt-4o", chat("plain prose")) is None
    # embeddings have no text to check
    assert validate_output(config, "openai", "/v1/embeddings", "text-embedding-3-small", {"data": []}) is None


def test_responses_endpoint(config: Config) -> None:
    assert validate_output(config, "openai", "/v1/responses", "gpt-4o", responses('{"a":', " 1}")) is None
    bad = validate_output(config, "openai", "/v1/responses", "gpt-4o", responses("nope"))
    assert bad is not None and "not valid JSON" in bad
    empty = validate_output(config, "openai", "/v1/responses", "gpt-4o", {"output": []})
    assert empty == "no JSON output: no output_text in the response"


def test_anthropic_text_blocks(config: Config) -> None:
    model = "claude-sonnet-4-20250514"
    assert validate_output(config, "anthropic", "/v1/messages", model, anthropic('{"answer": ', '"yes"}')) is None
    bad = validate_output(config, "anthropic", "/v1/messages", model, anthropic('{"answer": 1}'))
    assert bad is not None and "$.answer" in bad
    cut = validate_output(config, "anthropic", "/v1/messages", model, anthropic('{"answer": "y', stop="max_tokens"))
    assert cut is not None and "cut short" in cut
    # a whole result line is accepted as well as the message
    line = {"custom_id": "c1", "result": {"type": "succeeded", "message": anthropic('{"answer": "ok"}')}}
    assert validate_output(config, "anthropic", "/v1/messages", model, line) is None
    openai_line = {"custom_id": "r1", "response": {"status_code": 200, "body": chat("{oops")}, "error": None}
    assert validate_output(config, "openai", CHAT, "gpt-4o", openai_line) is not None


def test_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"

    def load(text: str) -> Config:
        path.write_text(text)
        return load_config(path)

    with pytest.raises(ConfigError, match=r"key 'buffers\[0\]\.output_schema': cannot read .*absent\.json"):
        load('[[buffers]]\noutput_schema = "absent.json"\n')
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"key 'buffers\[0\]\.output_schema': .*broken\.json is not JSON"):
        load('[[buffers]]\noutput_schema = "broken.json"\n')
    (tmp_path / "bad-schema.json").write_text('{"type": 5}')
    with pytest.raises(ConfigError, match=r"key 'buffers\[0\]\.output_schema': .*not a valid JSON Schema"):
        load('[[buffers]]\noutput_schema = "bad-schema.json"\n')
    with pytest.raises(ConfigError, match=r"key 'buffers\[1\]\.output': must be one of 'json', 'text'"):
        load('[[buffers]]\nmax_requests = 5\n\n[[buffers]]\noutput = "yaml"\n')
    with pytest.raises(ConfigError, match=r"key 'buffers\[0\]\.outptu'"):
        load('[[buffers]]\noutptu = "json"\n')
    (tmp_path / "ok.json").write_text(json.dumps(SCHEMA))
    with pytest.raises(ConfigError, match=r"key 'buffers\[0\]\.output': \"text\" contradicts"):
        load('[[buffers]]\noutput = "text"\noutput_schema = "ok.json"\n')
    # flush values of the same entry still work alongside the output keys
    config = load('[[buffers]]\nmodel = "m"\nmax_requests = 7\noutput = "json"\n')
    assert config.policy_for("openai", CHAT, "m").max_requests == 7


def test_schema_edits_are_picked_up(tmp_path: Path) -> None:
    schema_path = tmp_path / "s.json"
    schema_path.write_text(json.dumps({"type": "object"}))
    config = parse_config({"buffers": [{"output_schema": str(schema_path)}]})
    assert validate_output(config, "openai", CHAT, "gpt-4o", chat("[1]")) is not None
    import os
    import time

    schema_path.write_text(json.dumps({"type": "array"}))
    later = time.time_ns() + 10_000_000
    os.utime(schema_path, ns=(later, later))
    assert validate_output(config, "openai", CHAT, "gpt-4o", chat("[1]")) is None
