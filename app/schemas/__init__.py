"""Request and response bodies, one module per resource; the types their fields use are in
app/fields.py."""
