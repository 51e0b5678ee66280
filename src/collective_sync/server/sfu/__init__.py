"""The selective forwarding unit: WebRTC media and data channels inside the service.

Pure parts (`rtp`, `streamclock`) are apart from the aiortc glue (`peer`, `hub`), so the
rewriting and the clock map are tested with simulated packets and time.
"""
