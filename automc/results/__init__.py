"""Results: Pareto fronts and hypervolume, reports and plots, ONNX (float and int8) export and
the export of one stored candidate as a deployable model."""
