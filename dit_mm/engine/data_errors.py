"""An image file that cannot be read, and a data set with no samples, are
named in the error.

* mmcv 2.1.0's ``LoadImageFromFile`` (the first step of every mmdet, mmseg
  and mmpretrain pipeline) re-raises what the decoder says, and for an empty
  or broken file OpenCV says only ``(-215:Assertion failed) !buf.empty() in
  function 'imdecode_'``: nothing tells which of a data set's files it was.
* mmengine 0.10.7's ``BaseDataset`` with no samples (a wrong ``ann_file`` or
  ``data_root``, or a ``filter_cfg`` that removed them all) fails while it
  packs its list with ``need at least one array to concatenate``.

:func:`install` wraps both places so that the error says what is wrong and
where; what they load, ``ignore_empty=True`` and ``serialize_data=False``
are unchanged.
"""
import functools
import os.path as osp

from mmcv.transforms import LoadImageFromFile
from mmengine.dataset import BaseDataset


class ImageFileError(OSError):
    """An image file of a data set could not be read or decoded."""


class EmptyDatasetError(ValueError):
    """A data set found no samples."""


def _why(filename: str, err: Exception) -> str:
    if osp.isfile(filename) and osp.getsize(filename) == 0:
        return 'the file is empty (0 bytes)'
    return f'{type(err).__name__}: {err}'.strip()


def name_the_file(transform):
    """``LoadImageFromFile.transform`` with the file named in its errors."""
    if getattr(transform, '_dit_mm_wrapped', False):
        return transform

    @functools.wraps(transform)
    def wrapped(self, results):
        try:
            return transform(self, results)
        except Exception as err:  # noqa: BLE001  (re-raised, named)
            filename = str(results.get('img_path', ''))
            if not filename or filename in str(err):
                raise  # already names it (a missing file, say)
            raise ImageFileError(
                f'cannot read image {filename}: {_why(filename, err)}'
            ) from err

    wrapped._dit_mm_wrapped = True
    return wrapped


def refuse_empty(serialize):
    """``BaseDataset._serialize_data`` that names an empty data set."""
    if getattr(serialize, '_dit_mm_wrapped', False):
        return serialize

    @functools.wraps(serialize)
    def wrapped(self):
        if not self.data_list:
            where = ', '.join(
                f'{name}={getattr(self, name, None)!r}'
                for name in ('data_root', 'ann_file', 'data_prefix'))
            raise EmptyDatasetError(
                f'{type(self).__name__} found no samples ({where}): check '
                'these paths, and a filter_cfg that may have removed every '
                'sample')
        return serialize(self)

    wrapped._dit_mm_wrapped = True
    return wrapped


def install() -> None:
    """Wrap mmcv's ``LoadImageFromFile`` and mmengine's ``BaseDataset``."""
    LoadImageFromFile.transform = name_the_file(LoadImageFromFile.transform)
    BaseDataset._serialize_data = refuse_empty(BaseDataset._serialize_data)
