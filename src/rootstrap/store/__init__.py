"""The image store: machinectl's image verbs over a directory of images.

Why it is built this way: docs/architecture.md, "The store", and docs/decisions.md, "Clone".

Public API (everything else in this package is private)::

    store = Store(Path("/var/lib/machines"))
    store.images(all=False, usage=True) -> list[Image]      # list-images
    store.image(name, usage=True, fresh=True) -> Image      # show-image
    store.path(name) -> Path                                # validated; ImageNotFound
    store.running(name) -> bool                             # lock probe
    store.clone(src, dst, read_only=False, force=False) -> Path
    store.rename(old, new) -> Path ; store.remove(name) ; store.set_read_only(name, bool)
    store.import_tar(file, name) ; store.export_tar(name, file) ; store.import_fs(dir, name)
    store.clean(hidden=False) -> list[str]

    # building a new image (the bootstrap):
    with store.create(name, hidden=False) as new:   # name lock; ImageExists/ImageBusy/UsageError
        new.make_dir()                       # hidden .#NAME.xxxx, a subvolume on btrfs
        ... fill new.path ...
        new.publish(origin={...})            # syncfs, fsync, no-replace rename, origin xattr
    # or: temp = store.temp_path(name); ...; store.publish(temp, name, origin={...})
    #     (store.discard(temp) on failure)

    write_origin(path, info) / read_origin(path)     # user.rootstrap.origin xattr (JSON)
    read_os_release(root) -> dict[str, str]          # resolved inside ROOT

Names are checked by rootstrap.rules (image names; imports and the bootstrap may not make a
hidden one, clone and rename may).
"""

from rootstrap.store.image import Image, ImageType
from rootstrap.store.meta import read_origin, read_os_release, write_origin
from rootstrap.store.pool import NewImage, Store

__all__ = [
    "Image",
    "ImageType",
    "NewImage",
    "Store",
    "read_origin",
    "read_os_release",
    "write_origin",
]
