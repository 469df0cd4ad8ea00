"""Provider facts and adapters. `limits` is pure data; adapters import the SDKs lazily."""
