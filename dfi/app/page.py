"""The page's layout on Gradio: a face tab (upload or pick a face, an attribute, the α
slider — live with a decoder, Refine, downloads) and a style tab (content, style, method,
α). Every handler turns dfi's errors into one readable line in the page (``gr.Error``);
the server keeps running. Its HTTP API names ``/edit``, ``/sweep`` and ``/style``.
Uploads are plain files read by dfi itself (its reader, its pixel limit, its messages);
the detected face, with its landmarks, is shown beside."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from .editor import ALPHAS, Editor


def _hwc(image) -> np.ndarray:
    return np.clip(np.asarray(image), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def _readable(exc: BaseException, folder: Path) -> str:
    """One line, without the server's private folder in it."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(re.escape(str(folder)) + r"/(?:[0-9a-f]{40}/)?", "", text)


def build_page(editor: Editor, *, title: str = "dfi"):
    """The page (a ``gr.Blocks``) over ``editor``."""
    import gradio as gr

    def guarded(fn):
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:  # one line in the page; the server goes on
                raise gr.Error(_readable(exc, editor.uploads)) from None
        run.__name__ = fn.__name__
        return run

    @guarded
    def edit(photo, name, attribute, alpha, which=1):
        result = editor.edit(photo, name, attribute, alpha, int(which or 1))
        note = f"{result.how} edit at α {result.alpha:g}" + ("" if result.how == "fast" else
                                                              " (the nearest computed α)")
        return _hwc(result.image), note

    @guarded
    def refine(photo, name, attribute, alpha, which=1, progress=gr.Progress()):
        progress(0, desc="optimising (L-BFGS)")
        result = editor.refine(photo, name, attribute, alpha, int(which or 1),
                               progress=lambda done: progress(done, desc="optimising (L-BFGS)"))
        return _hwc(result.image), f"refined at α {result.alpha:g} ({result.record['iterations_run']} iterations)"

    @guarded
    def sweep(photo, name, attribute, which=1):
        results, record = editor.sweep(photo, name, attribute, int(which or 1))
        return [(_hwc(r), f"α {a:g}") for r, a in zip(results, ALPHAS)]

    @guarded
    def landmarks(photo, which=1):
        return None if not photo else _hwc(editor.landmarks(photo, None, int(which or 1)))

    @guarded
    def files(photo, name, attribute, which=1):
        folder = Path(tempfile.mkdtemp(dir=editor.uploads))
        return [str(p) for p in editor.downloads(photo, name, attribute, int(which or 1), folder)]

    @guarded
    def style(content, style_images, method, alpha, preserve_color, weights="", progress=gr.Progress()):
        from ..style.transforms import blend_weights

        paths = [style_images] if isinstance(style_images, str) else list(style_images or [])
        blend = None
        if weights and weights.strip():
            try:
                blend = [float(w) for w in weights.split(",")]
            except ValueError:
                raise gr.Error(f"style weights {weights!r}: give numbers, e.g. 0.7,0.3") from None
            blend = list(blend_weights(blend, len(paths)))
        return _hwc(editor.style(content, paths, method, alpha, preserve_color, blend,
                                 progress=lambda done: progress(done, desc=f"{method}")))

    def live_style(content, style_images, method, alpha, preserve_color, weights=""):
        """The style tab's live update: one-pass methods only (Gatys runs on the button)."""
        if not content or method == "gatys" or (method in ("adain", "wct") and not style_images):
            return gr.skip()
        return style(content, style_images, method, alpha, preserve_color, weights)

    attributes, names = editor.attributes(), editor.face_names()
    live = editor.decoder is not None
    with gr.Blocks(title=title, delete_cache=(3600, 3600)) as page:  # (its files also go when it stops)
        gr.Markdown("# dfi — Deep Feature Interpolation" + ("" if live else
                    "\nNo decoder: the first change computes the sweep (α 0.1 … 0.5), then α moves between its rows."))
        with gr.Tab("Face"):
            with gr.Row():
                with gr.Column():
                    photo = gr.File(label="photo (or pick an indexed face)", elem_id="photo", type="filepath")
                    name = gr.Dropdown(choices=names, value=None, allow_custom_value=True,
                                       label="indexed face (Person/N)", elem_id="name")
                    which = gr.Number(value=1, precision=0, minimum=1, label="which face (1 = the largest)",
                                      elem_id="which")
                    attribute = gr.Dropdown(choices=attributes, value=attributes[0] if attributes else None,
                                            allow_custom_value=True, label="attribute (or a spec: ~a,b)",
                                            elem_id="attribute")
                    alpha = gr.Slider(0.0, 1.0, value=0.3, step=0.05, label="α", elem_id="alpha")
                    with gr.Row():
                        refine_button = gr.Button("Refine", elem_id="refine")
                        sweep_button = gr.Button("Sweep", elem_id="sweep")
                        files_button = gr.Button("Downloads", elem_id="downloads")
                with gr.Column():
                    result = gr.Image(type="numpy", format="png", label="edited", elem_id="result",
                                      interactive=False)
                    status = gr.Textbox(label="status", interactive=False, elem_id="status")
                    seen = gr.Image(type="numpy", label="detected face", elem_id="landmarks", interactive=False)
            gallery = gr.Gallery(label="sweep", columns=len(ALPHAS), elem_id="gallery")
            downloads = gr.File(label="downloads: the sweep grid, the GIF, the JSON record", file_count="multiple")
            inputs = [photo, name, attribute, alpha, which]
            alpha.release(edit, inputs, [result, status], api_name="edit")
            refine_button.click(refine, inputs, [result, status], api_name="refine")
            sweep_button.click(sweep, [photo, name, attribute, which], gallery, api_name="sweep")
            files_button.click(files, [photo, name, attribute, which], downloads, api_name="downloads")
            photo.change(landmarks, [photo, which], seen, api_name=False)
        with gr.Tab("Style"):
            methods = editor.style_methods()
            with gr.Row():
                with gr.Column():
                    content = gr.File(label="content", elem_id="content", type="filepath")
                    style_image = gr.File(label="style image(s)", elem_id="style", type="filepath",
                                          file_count="multiple")
                    weights = gr.Textbox(label="style weights (e.g. 0.7,0.3; default equal)", elem_id="weights")
                    method = gr.Dropdown(choices=methods, value=methods[0] if methods else None, label="method",
                                         elem_id="method")
                    strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="α (AdaIN, WCT)", elem_id="strength")
                    colour = gr.Dropdown(choices=["none", "luminance", "histogram", "yuv"], value="none",
                                         label="preserve colour")
                    go = gr.Button("Stylise", elem_id="stylise")
                styled = gr.Image(type="numpy", format="png", label="stylised", elem_id="styled", interactive=False)
            style_inputs = [content, style_image, method, strength, colour, weights]
            go.click(style, style_inputs, styled, api_name="style")
            for control in (content, style_image, method, colour):  # one-pass methods follow every change
                control.change(live_style, style_inputs, styled, api_name=False)
            strength.release(live_style, style_inputs, styled, api_name=False)
    return page
