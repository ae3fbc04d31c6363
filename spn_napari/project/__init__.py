"""The project on disk: its SQLite state, its pixel arrays, artifact versions and the round history."""
