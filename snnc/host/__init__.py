"""The host's side of the accelerator's links (``snnc/host/link.py``: the UART link)."""
