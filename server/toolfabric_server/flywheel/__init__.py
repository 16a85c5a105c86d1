"""The data flywheel at toy scale: questions → baseline trajectories → curated export → TRL SFT → the trained
model served and evaluated through the fabric (docs/flywheel.md)."""
