"""The Channels peer: daphne + channels_redis (app.py), fed by bridge.py."""
