"""The project on disk: its SQLite state, its pixel arrays, artifact versions, the round history
and the live head's labels as kept."""
