"""The app's handlers and page, one module per concern; `app.py` loads the model, builds the page and launches it."""
