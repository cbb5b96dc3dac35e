"""The domestic relay server and its admin tool."""
