"""Where hookcast bends aiortc (and aioice, pylibsrtp): each module says what it touches.

- ``receiver``: a publisher's receive path on the event loop (LeanReceiver, LeanIngress).
"""
