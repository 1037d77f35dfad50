"""Search agents (ask/tell): random, Optuna TPE/NSGA-II, stable-baselines3 DDPG/PPO, and an
MNasNet-style controller. Registered under the ``automc.agents`` entry-point group."""
