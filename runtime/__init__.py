"""The onboard side of SkyFix: sources (bags, serial GPS, cameras), simulation, tracking and the CLIs.

Never imports torch or tensorrt at run time unless a backend that needs them is chosen.
"""
