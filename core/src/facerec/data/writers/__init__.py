"""Write any facerec Dataset to real files: image folder, ``path label [domain]`` list, or LMDB.

Layouts (what the papers' loaders read):

* ``folder``: ``OUT/<label:06d>/<index:08d>.<ext>`` (one folder per identity; needs labels); when the
  source has modality, ``OUT/<label:06d>/<index:08d>_{VIS,NIR}.<ext>`` (the mark the DVG originals'
  loaders look for in paths; read back with ``image-folder``'s ``modality_rule='_(NIR|VIS)\\.'``);
* ``list``:   ``OUT/images/<label:06d>/<index:08d>.<ext>`` plus ``OUT/list.txt`` with lines
  ``images/... label`` and, when the source has modality, a third column (0 = VIS, 1 = NIR; read
  it back with ``modality_rule=2``); unlabelled samples get label -1;
* ``lmdb``:   a single-file LMDB in the Vec2Face/HSFace layout: keys ``b"0".."N-1"`` holding
  ``msgpack((jpeg, npy_feature, label))`` when the source has features, else ``(jpeg, label)``,
  and ``__keys__``, ``__len__``, ``__classnum__`` (plus ``__labels__``/``__modality__`` so that
  readers get labels without a scan);
* ``rec``:    insightface's MXNet RecordIO layout (what arcface_torch reads): ``OUT.rec`` + ``OUT.idx``
  + ``property`` beside them, or ``OUT/train.rec``, ``train.idx``, ``property`` for a folder; JPEG
  image records 1..N (label, id = record number), the header record 0 and, when each identity's
  samples are contiguous, one identity record per label (see :mod:`facerec.data.recordio`).
  Labels only: modality and features are not stored.

Atomic and resumable: everything goes to ``OUT.partial`` first, committed in chunks with a
journal (for LMDB inside the same transaction as the records); an interrupted write resumes from
the last committed chunk when run again, and ``OUT`` appears only, by rename, when complete.
Stored image bytes are copied as they are (no re-encoding) when the source exposes them.
"""

from .dataset import FORMATS, ChunkedOutput, WriteResult, write_dataset  # noqa: F401 (ChunkedOutput: align)
from .files import LIST_NAME  # noqa: F401
from .journal import JournalledWriter  # noqa: F401 (the base of recordio_writer's RecWriter)
from .output import MARKER, check_output, written_by_facerec  # noqa: F401

__all__ = ["FORMATS", "WriteResult", "write_dataset", "check_output", "written_by_facerec"]
