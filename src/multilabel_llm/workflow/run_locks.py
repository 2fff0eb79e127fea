"""Two Snakemake runs in one project folder (e.g. two experiments, each with its own results
folder) must not break each other's locks.

Snakemake 9 keeps one lock directory per working directory (``.snakemake/locks``) and, when a
run ends, deletes that whole directory: the other run's lock files with it. A run still
building its DAG then dies with ``FileNotFoundError: .snakemake/locks/0.input.lock``, and a run
already going loses the locks that keep a third run off its outputs. :func:`keep_other_runs_locks`
(called from rules/common.smk) makes a finished run remove only its own lock files and
recreates the directory before writing; ``snakemake --unlock`` still clears every lock.
Snakemake's own check (a run whose outputs overlap another's locked files is refused) is
unchanged. Where Snakemake's persistence class lacks these methods, nothing is patched.
"""

from __future__ import annotations

import os


def keep_other_runs_locks() -> bool:
    """Patch Snakemake's file persistence as described above; True when patched."""
    try:
        from snakemake.persistence.file import FilePersistence
    except ImportError:
        return False
    needed = ("_write_locks", "_delete_locks", "cleanup_locks", "_lockdir", "_lockfile")
    if getattr(FilePersistence, "_multilabel_llm_patched", False):
        return True
    if not all(hasattr(FilePersistence, name) for name in needed[:3]):
        return False
    write_locks = FilePersistence._write_locks
    delete_all = FilePersistence._delete_locks

    def _write_locks(self, lock_type, keys):
        os.makedirs(self._lockdir, exist_ok=True)  # another run may have removed it
        return write_locks(self, lock_type, keys)

    def _delete_locks(self):
        for lockfile in self._lockfile.values():
            try:
                os.remove(lockfile)
            except FileNotFoundError:
                pass
        self._lockfile.clear()
        try:
            os.rmdir(self._lockdir)  # only when no other run holds a lock
        except OSError:
            pass

    def cleanup_locks(self):  # snakemake --unlock: every lock, as Snakemake does
        delete_all(self)

    FilePersistence._write_locks = _write_locks
    FilePersistence._delete_locks = _delete_locks
    FilePersistence.cleanup_locks = cleanup_locks
    FilePersistence._multilabel_llm_patched = True
    return True
