"""The local web page, ``dfi app``: a face tab with a live α slider and a style tab, on
Gradio, calling dfi's Python API only (:mod:`dfi.app.editor` holds a page visit's work and
caches; :mod:`dfi.app.page` lays out the page and names its HTTP API: ``/edit``,
``/sweep``, ``/style``).

May import: ``dfi.core``, ``dfi.nets``, ``dfi.face``, ``dfi.edit``, ``dfi.style``,
``data_tools``, and Gradio. Only ``dfi.cli`` imports it; it never imports ``dfi.cli``.
"""
