"""`lookalike info`: what an index is, holds, costs on disk, and which threshold and models serve it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lookalike.records import IndexInfo

if TYPE_CHECKING:
    from lookalike.api import Index


def index_info(index: Index) -> IndexInfo:
    from lookalike.copyindex import roles
    from lookalike.store.extra import counts
    from lookalike.store.faiss_store import VectorCache

    settings = index.settings
    catalog = index.catalog
    cache_dir = index._cache_dir()
    files = [*index.db_file.parent.glob(f"{index.db_file.name}*"), *cache_dir.glob("*")]
    return IndexInfo(
        root=index.source.location, db=str(index.db_file), model=index.model_id, dim=index.dim,
        images=catalog.count(), skipped=len(catalog.skipped()), size_bytes=sum(p.stat().st_size for p in files
                                                                                if p.is_file()),
        created_at=catalog.get_meta("created_at"), updated_at=catalog.get_meta("updated_at"),
        preprocessing=catalog.get_meta("preprocessing", {}),
        store=settings.store or IndexInfo.store, settings=settings.describe(),
        models={"serves": roles(index), "vectors": counts(catalog)},
        search_structure="" if settings.store else VectorCache(cache_dir, settings).describe(),
        threshold=index.threshold().as_dict(),
    )
