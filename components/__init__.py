"""hapx Pulumi components: one ComponentResource per file, plus config and rendering."""
