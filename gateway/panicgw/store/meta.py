"""Gateway-wide values (``meta``): the registry generation, supervision's last check-in and
bridge trouble, and the counters of refused frames (``rejections``)."""

from __future__ import annotations

from panicgw.store.connection import Connection


class MetaRepository(Connection):
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def registry_generation(self) -> int:
        """Bumped by every registry change, so a running daemon knows to reload."""
        return int(self.get_meta("registry_generation", "0") or 0)

    def _bump_generation(self) -> None:
        self.set_meta("registry_generation", str(self.registry_generation() + 1))

    # -- rejection counters --------------------------------------------------------------

    def add_rejections(self, counts: dict[str, int], at: float) -> None:
        for reason, n in counts.items():
            if n:
                self.db.execute(
                    "INSERT INTO rejections (reason, count, last_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count, "
                    "last_at = excluded.last_at",
                    (reason, n, at),
                )

    def rejections(self) -> dict[str, int]:
        return {r: int(n) for r, n in self.db.execute(
            "SELECT reason, count FROM rejections ORDER BY reason")}
