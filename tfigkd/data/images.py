"""Images of any size and colour mode -> one size and mode, decoded in parallel, cached on disk.

An image folder is decoded once into a uint8 ``images.npy`` (read back
memory-mapped) under a cache folder whose name is a hash of the folder's
file listing (path, size, modification time of every image) and the size
settings (``data.image_size``, ``data.resize``, ``data.color``). A second run
with the same files and settings maps the cache instead of decoding; a
changed file or setting gives another key, so a stale cache is never used.
Each cache folder also records its key in ``meta.json``, and a cache whose
record does not match (tampered, truncated, from another tfigkd) is refused
and rebuilt.

Decoding uses a thread pool: Pillow releases the GIL while it decodes and
resizes, so threads scale on cores without the start-up cost of processes
(which would each import TensorFlow).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os

import numpy as np

from tfigkd.data.lazy import NpyRowWriter
from tfigkd.data.reading import reading
from tfigkd.errors import UserError

log = logging.getLogger(__name__)

EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
RESIZE_POLICIES = ("stretch", "crop", "pad")
_GRAY_MODES = ("L", "1", "I;16", "I;16B", "I;16L", "I", "LA")
_CACHE_VERSION = 1
_FIX = "delete or replace the file"


def default_workers():
    """Decoder threads when ``data.workers`` is 0: the cores, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def cache_root(cache_dir=None):
    """The image-cache folder: ``data.cache_dir``, else ``$TFIGKD_CACHE_DIR``, else ~/.cache/tfigkd."""
    root = cache_dir or os.environ.get("TFIGKD_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "tfigkd")
    return os.path.join(os.path.expanduser(root), "images")


def _pil_mode(color):
    return {"rgb": "RGB", "grayscale": "L"}[color]


def fit_image(im, size, resize):
    """Resizes a PIL image to ``size`` (H, W) with a resize policy.

    Args:
        im: A PIL image (already in its final colour mode).
        size: Target (H, W), or None to keep the image's size.
        resize: "stretch" (ignore the aspect ratio), "crop" (centre-crop to
            the target aspect ratio, then resize) or "pad" (resize to fit
            inside, keeping the aspect ratio, then pad with zeros around it).

    Returns:
        The resized PIL image.
    """
    from PIL import Image

    if size is None:
        return im
    h, w = int(size[0]), int(size[1])
    src_w, src_h = im.size
    if (src_w, src_h) == (w, h):
        return im
    if resize == "stretch":
        return im.resize((w, h), Image.BILINEAR)
    if resize == "crop":
        scale = max(w / src_w, h / src_h)
        # Clamped: float rounding can push the box a hair outside the image.
        cw, ch = min(src_w, w / scale), min(src_h, h / scale)
        left, top = max(0.0, (src_w - cw) / 2), max(0.0, (src_h - ch) / 2)
        return im.resize((w, h), Image.BILINEAR, box=(left, top, left + cw, top + ch))
    if resize == "pad":
        scale = min(w / src_w, h / src_h)
        nw, nh = max(1, round(src_w * scale)), max(1, round(src_h * scale))
        canvas = Image.new(im.mode, (w, h), 0)
        canvas.paste(im.resize((nw, nh), Image.BILINEAR), ((w - nw) // 2, (h - nh) // 2))
        return canvas
    raise UserError(f"data.resize: {resize!r} is not one of {', '.join(RESIZE_POLICIES)}.")


def _to_array(im):
    arr = np.asarray(im, np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def _auto_mode(mode):
    return "L" if mode in _GRAY_MODES else "RGB"


def _decode(path, size, resize, mode):
    from PIL import Image

    with reading(path, "an image", _FIX):
        with Image.open(path) as im:
            im.load()
            # "I;16" etc. would overflow uint8 in convert("L"); scale first.
            if im.mode.startswith("I;16") or im.mode == "I":
                im = Image.fromarray((np.asarray(im, np.float64) / 257.0).round()
                                     .clip(0, 255).astype(np.uint8))
            im = im.convert(mode)
    # Outside ``reading``: a resize failure is a bug, not a damaged file.
    return _to_array(fit_image(im, size, resize))


def _header(path):
    from PIL import Image

    with reading(path, "an image", _FIX):
        with Image.open(path) as im:
            return (im.size[1], im.size[0]), im.mode


def list_class_folders(root):
    """``root/<class>/<image>`` -> (sorted file paths, labels, class names)."""
    classes = sorted(d for d in os.listdir(root)
                     if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not classes:
        raise UserError(f"{root}: no class sub-folders found; expected "
                        f"{root}/<class_name>/<image files>.")
    files, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        found = sorted(fn for fn in os.listdir(folder)
                       if fn.lower().endswith(EXTS) and not fn.startswith("."))
        if not found:
            raise UserError(f"{folder}: class folder {name!r} holds no images "
                            f"({', '.join(EXTS)}); add images or remove the folder.")
        files += [os.path.join(folder, fn) for fn in found]
        labels += [label] * len(found)
    return files, np.asarray(labels, np.int64), classes


def _listing_hash(files):
    h = hashlib.sha256(b"tfigkd-listing-v1")
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _parallel(fn, items, workers, desc, progress):
    """``fn`` over ``items`` in a thread pool, in order; all failures gathered, first raised."""
    from tqdm.auto import tqdm

    out = [None] * len(items)
    errors = []
    bar = tqdm(total=len(items), unit="img", desc=desc, disable=not progress, smoothing=0.1)
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        for fut in concurrent.futures.as_completed(futures):
            i = futures[fut]
            try:
                out[i] = fut.result()
            except UserError as e:
                errors.append((i, e))
            bar.update(1)
    bar.close()
    if errors:
        errors.sort(key=lambda t: t[0])
        more = f" ({len(errors) - 1} more unreadable files)" if len(errors) > 1 else ""
        raise UserError(f"{errors[0][1]}{more}")
    return out


def _readable(*paths):
    # The odd one out may be a damaged file whose header still parses; that is
    # the problem to report, not its size.
    for p in paths:
        _decode(p, None, "stretch", "RGB")


def resolve_settings(headers, files, image_size, color):
    """The target (H, W) and PIL mode from the images' headers and the settings.

    Raises:
        UserError: Mixed sizes without ``data.image_size`` or mixed colour
            modes without ``data.color``, naming two files that differ.
    """
    if image_size is None:
        first = headers[0][0]
        for path, (hw, _) in zip(files, headers):
            if hw != first:
                _readable(path, files[0])
                raise UserError(
                    f"{path} is {hw[0]}x{hw[1]} but {files[0]} is {first[0]}x{first[1]}; images "
                    "must share one size unless data.image_size: [H, W] is set (with data.resize: "
                    "stretch, crop or pad).")
        size = first
    else:
        size = tuple(int(v) for v in image_size)
    if color is None:
        first = _auto_mode(headers[0][1])
        for path, (_, m) in zip(files, headers):
            if _auto_mode(m) != first:
                _readable(path, files[0])
                raise UserError(
                    f"{path} is {m} but {files[0]} is {headers[0][1]}; images must share one "
                    "colour mode unless data.color is set (rgb or grayscale).")
        mode = first
    else:
        mode = _pil_mode(color)
    return size, mode


class FolderCache:
    """One cache entry: ``images.npy`` + ``labels.npy`` + ``meta.json`` in a keyed folder."""

    def __init__(self, root, files, labels, classes, settings, cache_dir=None):
        self.files, self.labels, self.classes = files, labels, classes
        self.listing = _listing_hash(files)
        self.settings = dict(settings)
        key = json.dumps({"v": _CACHE_VERSION, "root": os.path.abspath(root),
                          "listing": self.listing, "settings": self.settings}, sort_keys=True)
        self.key = hashlib.sha256(key.encode()).hexdigest()
        self.dir = os.path.join(cache_root(cache_dir), self.key[:24])

    @property
    def meta_path(self):
        return os.path.join(self.dir, "meta.json")

    def load(self):
        """The cached (images memmap, labels), or None when absent or refused."""
        if not os.path.isfile(self.meta_path):
            return None
        try:
            with open(self.meta_path) as f:
                meta = json.load(f)
            if (meta.get("key"), meta.get("listing"), meta.get("settings")) != (
                    self.key, self.listing, self.settings):
                raise ValueError("its record does not match the files and settings")
            x = np.load(os.path.join(self.dir, "images.npy"), mmap_mode="r")
            y = np.load(os.path.join(self.dir, "labels.npy"))
            if x.shape != tuple(meta["shape"]) or x.dtype != np.uint8 or len(y) != len(x) \
                    or not np.array_equal(y, self.labels):
                raise ValueError(f"images {x.shape} {x.dtype} do not match its record")
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("Refusing the image cache %s (%s); decoding again.", self.dir, e)
            return None
        return x, y

    def write(self, size, mode, workers, progress):
        """Decodes every file into the cache; returns (images memmap, labels)."""
        from tfigkd.io import atomic_path, write_json

        n, c = len(self.files), 1 if mode == "L" else 3
        shape = (n, int(size[0]), int(size[1]), c)
        log.info("Decoding %d images to %dx%dx%d with %d threads into %s (%.1f MB).", n, *shape[1:],
                 workers, self.dir, np.prod(shape) / 1e6)
        os.makedirs(self.dir, exist_ok=True)
        with atomic_path(os.path.join(self.dir, "images.npy")) as tmp:
            # Row writes, not a writable memory map: a folder larger than
            # memory is decoded without holding it (see NpyRowWriter).
            with NpyRowWriter(tmp, shape, np.uint8) as out:
                resize = self.settings["resize"]

                def one(i):
                    arr = _decode(self.files[i], size, resize, mode)
                    if arr.shape != shape[1:]:  # cannot happen once resized; guards the headers
                        raise UserError(f"{self.files[i]} decoded to {arr.shape}, not "
                                        f"{shape[1:]}; {_FIX}.")
                    out.write(i, arr[None])

                _parallel(one, range(n), workers, "Decoding images", progress)
        with atomic_path(os.path.join(self.dir, "labels.npy")) as tmp:
            np.save(tmp, self.labels)
        # Written last: a cache without its record is incomplete and never read.
        write_json(self.meta_path, {"key": self.key, "listing": self.listing,
                                    "settings": self.settings, "shape": list(shape),
                                    "classes": self.classes, "files": len(self.files)})
        return np.load(os.path.join(self.dir, "images.npy"), mmap_mode="r"), self.labels


def decode_folders(roots, *, image_size=None, resize="stretch", color=None, cache_dir=None,
                   workers=0, progress=True):
    """Decodes one or more class-folder trees to one size and mode, through the disk cache.

    Args:
        roots: Folders, each ``<root>/<class>/<image>`` (e.g. train/ and test/);
            they share the resolved size and colour mode.
        image_size: Target (H, W), or None when all images share one size.
        resize: "stretch", "crop" or "pad" (see ``fit_image``).
        color: "rgb", "grayscale", or None when all images share one mode.
        cache_dir: Cache location (see ``cache_root``).
        workers: Decoder threads (0: ``default_workers()``).
        progress: Show tqdm bars.

    Returns:
        A list of ``(images, labels, class_names)``, one per root; images
        are read-only memory-mapped uint8 (N, H, W, C).
    """
    workers = workers or default_workers()
    settings = {"image_size": list(image_size) if image_size else None, "resize": resize,
                "color": color}
    entries = [FolderCache(r, *list_class_folders(r), settings, cache_dir) for r in roots]
    loaded = [e.load() for e in entries]
    if all(v is not None for v in loaded):
        log.info("Image cache hit: %s.", ", ".join(e.dir for e in entries))
        return [(*v, e.classes) for v, e in zip(loaded, entries)]
    files = [f for e in entries for f in e.files]
    headers = _parallel(_header, files, workers, "Reading image headers", progress)
    size, mode = resolve_settings(headers, files, image_size, color)
    out = []
    for e, v in zip(entries, loaded):
        out.append((*(v if v is not None else e.write(size, mode, workers, progress)), e.classes))
    return out


def convert_arrays(x, image_size=None, resize="stretch", color=None, workers=0):
    """Applies the size and colour settings to an in-memory uint8 (N, H, W, C) array.

    Returns ``x`` itself when nothing changes.
    """
    from PIL import Image

    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.dtype != np.uint8 or x.shape[-1] not in (1, 3):
        return x  # _check_arrays explains what is wrong with it
    want_c = {None: x.shape[-1], "grayscale": 1, "rgb": 3}[color]
    want_hw = tuple(int(v) for v in image_size) if image_size else x.shape[1:3]
    if want_c == x.shape[-1] and want_hw == x.shape[1:3]:
        return x
    mode = "L" if want_c == 1 else "RGB"
    out = np.empty((len(x), *want_hw, want_c), np.uint8)

    def one(i):
        im = Image.fromarray(x[i, ..., 0] if x.shape[-1] == 1 else x[i])
        out[i] = _to_array(fit_image(im.convert(mode), want_hw, resize))

    workers = workers or default_workers()
    # Chunks keep the per-task overhead small for tens of thousands of tiny images.
    chunks = [range(s, min(s + 512, len(x))) for s in range(0, len(x), 512)]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda r: [one(i) for i in r], chunks))
    return out
