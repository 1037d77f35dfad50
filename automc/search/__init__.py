"""The search: the ask → evaluate → tell loop, its context, executors, the trial store,
candidates, the agent contract, rewards and the gymnasium environment RL agents learn on."""
