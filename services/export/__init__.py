"""`toolfabric export`: training data from stored trajectories (SFT, R1V4 rounds, RL view)."""
