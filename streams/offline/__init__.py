"""The offline replays: of event files (the engine alone) and of the recorded log."""
