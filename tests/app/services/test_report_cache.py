from app.services.report_cache import CachedReport, ReportCache


def entry(size: int, tag: str = "t") -> CachedReport:
    return CachedReport(etag=f'"{tag}"', body=b"x" * size)


def test_least_recently_used_reports_leave_first_within_the_byte_bound():
    cache = ReportCache(max_bytes=100)
    cache.put("a", entry(40))
    cache.put("b", entry(40))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", entry(40))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.size_bytes == 80 and len(cache) == 2


def test_replacing_an_entry_counts_its_bytes_once_and_oversize_is_not_kept():
    cache = ReportCache(max_bytes=100)
    cache.put("a", entry(60, "1"))
    cache.put("a", entry(30, "2"))
    assert cache.size_bytes == 30 and cache.get("a").etag == '"2"'
    cache.put("big", entry(101))
    assert cache.get("big") is None and cache.size_bytes == 30
