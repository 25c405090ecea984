"""A resumable, fingerprinted TFRecord store of the teacher's IG maps.

Layout of a store folder::

    shard-00000-of-00012.tfrecord.gz   GZIP TFRecords, one tf.train.Example per map
    shard-00000-of-00012.json          sidecar: count, SHA-256, indices, deltas
    manifest.json                      the whole store, written last

Shard ``k`` holds the training examples at positions ``[k*S, (k+1)*S)`` of
the split sorted by example index, so which examples a shard holds depends
only on the data, never on a loader's shuffling. Every record carries its
example index, and reading back joins maps to images by that index after
checking the data fingerprint, the teacher's file hash, the map shape and
each shard's checksum. A shard counts as done only when its sidecar exists
(written after the shard itself, both atomically), so a killed job resumes
by computing exactly the shards that lack one.
"""

from __future__ import annotations

import glob
import hashlib
import os
import time
from dataclasses import asdict

import numpy as np
import tensorflow as tf

from tfigkd.attribution.settings import stored_settings
from tfigkd.freshness import recipe_diff
from tfigkd.data.lazy import LazyRows, NpyRowWriter
from tfigkd.errors import UserError
from tfigkd.faults import fault_point
from tfigkd.io import atomic_path, file_sha256, read_json, remove_stale_temps, write_json

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class StoreMismatchError(UserError):
    """The stored maps do not belong to this data or teacher, or are damaged."""


def shard_name(k, n):
    return f"shard-{k:05d}-of-{n:05d}"


def _example(index, label, m, delta, rel):
    f = tf.train.Feature
    return tf.train.Example(features=tf.train.Features(feature={
        "index": f(int64_list=tf.train.Int64List(value=[int(index)])),
        "label": f(int64_list=tf.train.Int64List(value=[int(label)])),
        "shape": f(int64_list=tf.train.Int64List(value=list(m.shape))),
        "map": f(bytes_list=tf.train.BytesList(value=[m.astype("<f2").tobytes()])),
        "delta": f(float_list=tf.train.FloatList(value=[float(delta)])),
        "rel_error": f(float_list=tf.train.FloatList(value=[float(rel)])),
    # Deterministic: protobuf otherwise writes map entries in an order that
    # varies between processes, so a recomputed shard would get other bytes.
    })).SerializeToString(deterministic=True)


def plan_shards(n_examples, shard_size):
    """Shard boundaries ``[(start, stop), ...]`` over sorted positions."""
    n = max(1, -(-n_examples // shard_size))
    return [(k * shard_size, min((k + 1) * shard_size, n_examples)) for k in range(n)]


def parse_shard_spec(spec):
    """"i/N" -> (i, N), validated."""
    try:
        i, n = (int(v) for v in spec.split("/"))
    except (ValueError, AttributeError):
        raise UserError(f"--shard must look like i/N (e.g. 0/4), got {spec!r}.") from None
    if not 0 <= i < n:
        raise UserError(f"--shard {spec}: need 0 <= i < N.")
    return i, n


def write_store(store_dir, subset, compute_fn, *, fingerprint, teacher_hash, settings,
                shard_size=1000, batch_size=64, worker=(0, 1), progress=True):
    """Computes and writes the missing shards of this worker.

    Args:
        store_dir: Output folder.
        subset: The training ``Subset`` (uint8 images, labels, indices).
        compute_fn: ``fn(x_uint8, labels) -> (maps (B,H,W) float32, delta (B,),
            rel_error (B,))``.
        fingerprint: The training split's fingerprint.
        teacher_hash: SHA-256 of the teacher's file.
        settings: ``IGSettings``.
        shard_size: Examples per shard.
        batch_size: Images per ``compute_fn`` call.
        worker: ``(i, N)``: this worker does shards with ``k % N == i``.
        progress: Show a progress bar with images/s and ETA.

    Returns:
        Number of shards computed in this call.

    Raises:
        StoreMismatchError: If the folder holds shards made for other data,
            another teacher or other settings.
    """
    os.makedirs(store_dir, exist_ok=True)
    remove_stale_temps(store_dir)
    order = np.argsort(subset.index, kind="stable")
    shards = plan_shards(len(order), shard_size)
    n = len(shards)
    meta = store_meta(len(order), fingerprint=fingerprint, teacher_hash=teacher_hash,
                      settings=settings, shard_size=shard_size)
    _check_existing(store_dir, meta)
    todo = [k for k in range(n) if k % worker[1] == worker[0]
            and not os.path.exists(os.path.join(store_dir, shard_name(k, n) + ".json"))]
    total_imgs = sum(shards[k][1] - shards[k][0] for k in todo)
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_imgs, unit="img", desc="IG maps", smoothing=0.1)
    for k in todo:
        start, stop = shards[k]
        pos = order[start:stop]
        name = shard_name(k, n)
        maps, deltas, rels = [], [], []
        for b in range(0, len(pos), batch_size):
            p = pos[b:b + batch_size]
            m, d, r = compute_fn(subset.x[p], subset.y[p])
            maps.append(np.asarray(m, np.float32))
            deltas.append(np.asarray(d, np.float32))
            rels.append(np.asarray(r, np.float32))
            if bar is not None:
                bar.update(len(p))
        maps, deltas, rels = np.concatenate(maps), np.concatenate(deltas), np.concatenate(rels)
        path = os.path.join(store_dir, name + ".tfrecord.gz")
        with atomic_path(path) as tmp:
            with tf.io.TFRecordWriter(tmp, options="GZIP") as w:
                for j, q in enumerate(pos):
                    w.write(_example(subset.index[q], subset.y[q], maps[j], deltas[j], rels[j]))
        fault_point("ig:shard_written")
        write_json(os.path.join(store_dir, name + ".json"), {
            **meta, "shard": k, "file": os.path.basename(path), "count": int(len(pos)),
            "sha256": file_sha256(path), "first_index": int(subset.index[pos[0]]),
            "last_index": int(subset.index[pos[-1]]), "map_shape": list(maps.shape[1:]),
            "delta": deltas.tolist(), "rel_error": rels.tolist(),
        })
    if bar is not None:
        bar.close()
    return len(todo)


def store_meta(n_examples, *, fingerprint, teacher_hash, settings, shard_size):
    """What every shard of a store for this data, teacher and settings records."""
    return {"format": FORMAT_VERSION, "fingerprint": fingerprint, "teacher_sha256": teacher_hash,
            "settings": asdict(settings), "shard_size": shard_size,
            "num_shards": len(plan_shards(n_examples, shard_size))}


def verify_store(store_dir, subset, *, fingerprint, teacher_hash, settings, shard_size):
    """Checks a store completely and (re)writes its manifest.

    Every sidecar is compared with the current data fingerprint, teacher hash
    and IG settings; every shard file's SHA-256 with its sidecar; then every
    record is read back and joined to ``subset`` by example index (counts,
    shapes, no duplicates, no example without a map).

    Returns:
        The manifest dict.

    Raises:
        StoreMismatchError: Naming the first problem found and its fix.
    """
    if not glob.glob(os.path.join(store_dir, "shard-*.json")):
        raise StoreMismatchError(f"{store_dir} holds no finished IG shards; run "
                                 "`tfigkd precompute-ig` (without --verify) first.")
    _check_existing(store_dir, store_meta(len(subset), fingerprint=fingerprint,
                                          teacher_hash=teacher_hash, settings=settings,
                                          shard_size=shard_size))
    manifest = finalize_store(store_dir)
    load_maps(store_dir, subset, fingerprint=fingerprint, teacher_hash=teacher_hash,
              settings=settings, keep=False)
    return manifest


def _check_existing(store_dir, meta):
    for side in glob.glob(os.path.join(store_dir, "shard-*.json")):
        old = read_json(side)
        old["settings"] = stored_settings(old.get("settings"))
        for key in ("fingerprint", "teacher_sha256", "settings", "shard_size", "num_shards"):
            what = recipe_diff({key: old.get(key)}, {key: meta[key]})
            if what:
                raise StoreMismatchError(
                    f"{side} was made with a different {key} ({what}): the store belongs to "
                    "other data, another teacher or other IG settings; use a new --out folder "
                    f"or delete {store_dir}.")


def missing_shards(store_dir):
    """Numbers of the shards whose sidecar (the "done" marker) is absent.

    Returns an empty list when the store is complete or holds no shard at all.
    """
    sides = glob.glob(os.path.join(store_dir, "shard-*.json"))
    if not sides:
        return []
    n = read_json(sides[0])["num_shards"]
    have = {read_json(s)["shard"] for s in sides}
    return sorted(set(range(n)) - have)


def finalize_store(store_dir):
    """Checks that the shards make a whole, then writes ``manifest.json``.

    This is the merge step after ``--shard i/N`` jobs; a single-machine run
    calls it automatically.

    Returns:
        The manifest dict.

    Raises:
        StoreMismatchError: If a shard or its sidecar is missing or corrupt,
            or the sidecars disagree.
    """
    sides = sorted(glob.glob(os.path.join(store_dir, "shard-*.json")))
    if not sides:
        raise StoreMismatchError(f"{store_dir} holds no finished IG shards; run precompute-ig.")
    infos = [read_json(s) for s in sides]
    n = infos[0]["num_shards"]
    have = {i["shard"] for i in infos}
    missing = sorted(set(range(n)) - have)
    if missing:
        raise StoreMismatchError(
            f"{store_dir}: {len(missing)} of {n} shards are missing (e.g. "
            f"{', '.join(shard_name(k, n) for k in missing[:3])}); run the remaining "
            "precompute-ig --shard jobs (or one without --shard) and verify again.")
    keys = ("fingerprint", "teacher_sha256", "settings", "shard_size", "num_shards", "map_shape")
    for i in infos[1:]:
        for key in keys:
            if i[key] != infos[0][key]:
                raise StoreMismatchError(f"{store_dir}: shards disagree on {key}; "
                                         "they come from different runs.")
    for i in infos:
        _verify_file(store_dir, i)
    deltas = np.abs(np.concatenate([i["delta"] for i in infos]))
    rels = np.concatenate([i["rel_error"] for i in infos])
    manifest = {key: infos[0][key] for key in keys}
    manifest.update(format=FORMAT_VERSION, count=int(sum(i["count"] for i in infos)),
                    created=time.strftime("%Y-%m-%dT%H:%M:%S"),
                    shards=[{k: i[k] for k in ("shard", "file", "count", "sha256",
                                               "first_index", "last_index")} for i in infos],
                    completeness={
                        "median_abs_delta": float(np.median(deltas)),
                        "max_abs_delta": float(deltas.max()),
                        "median_rel_error": float(np.median(rels)),
                        "p90_rel_error": float(np.percentile(rels, 90)),
                        "max_rel_error": float(rels.max()),
                    })
    write_json(os.path.join(store_dir, MANIFEST), manifest)
    return manifest


def _verify_file(store_dir, info):
    path = os.path.join(store_dir, info["file"])
    if not os.path.exists(path):
        raise StoreMismatchError(f"{path} is missing; delete its sidecar "
                                 f"{shard_name(info['shard'], info['num_shards'])}.json "
                                 "and run precompute-ig again to recompute it.")
    if file_sha256(path) != info["sha256"]:
        raise StoreMismatchError(f"{path} is corrupt (checksum mismatch); delete it and its "
                                 ".json sidecar and run precompute-ig again.")


def _parse(raw):
    spec = {"index": tf.io.FixedLenFeature([1], tf.int64),
            "label": tf.io.FixedLenFeature([1], tf.int64),
            "shape": tf.io.FixedLenFeature([2], tf.int64),
            "map": tf.io.FixedLenFeature([], tf.string),
            "delta": tf.io.FixedLenFeature([1], tf.float32)}
    return tf.io.parse_single_example(raw, spec)


def load_maps(store_dir, subset, *, fingerprint, teacher_hash=None, settings=None,
              join_dir=None, keep=True):
    """Reads the store and returns maps aligned to ``subset``'s order.

    Args:
        store_dir: A finalised store.
        subset: The training ``Subset`` the maps are for.
        fingerprint: That subset's fingerprint.
        teacher_hash: If given, the teacher file's SHA-256 must match.
        settings: If given (an ``IGSettings``), must match the stored ones.
        join_dir: For data larger than memory: join the maps into a ``.npy``
            file in this folder (written row by row, atomically; named by
            ``joined_maps_path``, a key of the manifest and the subset's
            indices, so a file already there is reused only for the same
            store and split) and return them unread (``LazyRows``).
        keep: False checks every record without keeping the maps (returns None).

    Returns:
        float16 array (len(subset), H, W): row ``i`` is the map of
        ``subset.index[i]``, joined by index, never by position.

    Raises:
        StoreMismatchError: On a missing manifest, a fingerprint / teacher /
            settings / shape mismatch, a missing or corrupt shard, or indices
            that do not cover the subset exactly once.
    """
    mpath = os.path.join(store_dir, MANIFEST)
    if not os.path.exists(mpath):
        raise StoreMismatchError(f"{mpath} not found: the IG store is incomplete. Run "
                                 "`tfigkd precompute-ig` (or its verify step after --shard jobs).")
    man = read_json(mpath)
    if man["fingerprint"] != fingerprint:
        raise StoreMismatchError(
            f"IG maps in {store_dir} were computed for other training data (fingerprint "
            f"{man['fingerprint'][:12]}, this data {fingerprint[:12]}): the split, subset, "
            "seed or files changed. Recompute them with precompute-ig into a new folder.")
    if teacher_hash is not None and man["teacher_sha256"] != teacher_hash:
        raise StoreMismatchError(
            f"IG maps in {store_dir} were computed with another teacher (sha256 "
            f"{man['teacher_sha256'][:12]} vs {teacher_hash[:12]}). Recompute them.")
    if settings is not None and stored_settings(man["settings"]) != asdict(settings):
        raise StoreMismatchError(f"IG maps in {store_dir} used settings {man['settings']}, "
                                 f"the config asks for {asdict(settings)}. Recompute them.")
    h, w = man["map_shape"]
    if (h, w) != tuple(subset.x.shape[1:3]):
        raise StoreMismatchError(f"IG maps are {h}x{w} but the images are "
                                 f"{subset.x.shape[1]}x{subset.x.shape[2]}.")
    if keep and join_dir is not None:
        to_file = joined_maps_path(store_dir, subset, join_dir)
        if os.path.exists(to_file):
            for sh in man["shards"]:
                _verify_file(store_dir, {**sh, "num_shards": len(man["shards"])})
            return LazyRows.open(to_file)
        with atomic_path(to_file) as tmp, NpyRowWriter(tmp, (len(subset), h, w), np.float16) as out:
            _join_records(store_dir, man, subset, (h, w), out.write)
        return LazyRows.open(to_file)
    out = np.zeros((len(subset), h, w), np.float16) if keep else None

    def put(p, rows):
        if out is not None:
            out[p] = rows[0]

    _join_records(store_dir, man, subset, (h, w), put)
    return out


def joined_maps_path(store_dir, subset, folder):
    """Where ``load_maps(to_file=...)`` keeps a store's maps joined to ``subset``.

    The name holds a hash of the store's manifest (its shards' checksums) and
    of the subset's indices, so another store or split never reuses it.
    """
    h = hashlib.sha256()
    with open(os.path.join(store_dir, MANIFEST), "rb") as f:
        h.update(f.read())
    h.update(np.asarray(subset.index, np.int64).tobytes())
    return os.path.join(folder, f"{os.path.basename(os.path.normpath(store_dir))}-"
                                f"{h.hexdigest()[:20]}.npy")


def _join_records(store_dir, man, subset, shape, put):
    """Reads every record, checks it and calls ``put(position, map[None])``."""
    h, w = shape
    pos_of = {int(i): p for p, i in enumerate(subset.index)}
    seen = np.zeros(len(subset), bool)
    for sh in man["shards"]:
        _verify_file(store_dir, {**sh, "num_shards": len(man["shards"])})
        ds = tf.data.TFRecordDataset(os.path.join(store_dir, sh["file"]), compression_type="GZIP")
        count = 0
        for rec in ds.map(_parse):
            idx = int(rec["index"][0])
            if idx not in pos_of:
                raise StoreMismatchError(f"{sh['file']} holds a map for example {idx}, "
                                         "which is not in this training split.")
            p = pos_of[idx]
            if seen[p]:
                raise StoreMismatchError(f"Example {idx} has two maps in the store.")
            if tuple(rec["shape"].numpy()) != (h, w):
                raise StoreMismatchError(f"{sh['file']}: map of example {idx} has shape "
                                         f"{tuple(rec['shape'].numpy())}, manifest says {(h, w)}.")
            put(p, np.frombuffer(rec["map"].numpy(), "<f2").reshape(1, h, w))
            seen[p] = True
            count += 1
        if count != sh["count"]:
            raise StoreMismatchError(f"{sh['file']} holds {count} maps, manifest says {sh['count']}.")
    if not seen.all():
        raise StoreMismatchError(f"{(~seen).sum()} training examples have no IG map "
                                 f"(e.g. index {int(subset.index[~seen][0])}).")
