"""Graphics items and the canvas widget; they draw the document and request edits, never write it."""
