"""Edge pipeline-parallel training (AccEPT, Confidant): device profiles, latency prediction, partitioning,
compression of stage-boundary tensors, the pipeline runner and device emulation."""
