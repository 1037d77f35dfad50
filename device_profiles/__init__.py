"""Device profiles: FLOPs/size proxy, measured onnxruntime latency, lookup tables, analytic
accelerator model. Registered under ``automc.device_profiles``."""
