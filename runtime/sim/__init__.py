"""Simulated flights over an orthophoto, written as ROS1 bags with standard messages."""
