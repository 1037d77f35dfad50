"""Compression: the search-space contract, quantisation (fake-quant layers, int8 schemes),
layer analysis (MACs, sizes) and compressed models saved as card + state_dict."""
