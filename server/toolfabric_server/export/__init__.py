"""`toolfabric export`: training data from recorded trajectories.

Trajectories come from the fabric through the SDK (ListTrajectories, GetTrajectory, GetImage), so an
export runs against any deployment. The conversation is rebuilt exactly as the agent loop showed it to
the model (engine/prompting.py, the model's chat template), then written as SFT (ms-swift messages),
R1V4 rounds JSON or an RL view, after composable curation filters.
"""
