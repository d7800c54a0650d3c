"""The two prices fitted per week or month: how the market moved."""

from dataclasses import dataclass
from datetime import date

from sqlalchemy.orm import Session

from app.services.aggregates import Period, SalesFilter, sums_by_period
from models import FitReport, ModelError, RingPriceRegressor


@dataclass(frozen=True)
class PeriodFit:
    start: date
    n_samples: int
    silver_price: float | None
    gold_price_per_carat: float | None
    report: FitReport | None


def price_history(session: Session, where: SalesFilter, period: Period) -> list[PeriodFit]:
    """One fit per period from that period's sufficient statistics: O(1) each after the one
    grouped query. A period whose sales cannot be fitted (fewer than two carat values) has
    its count and no prices."""
    fits = []
    for start, stats in sums_by_period(session, where, period):
        try:
            reg = RingPriceRegressor().fit_stats(stats)
        except ModelError:
            fits.append(PeriodFit(start, stats.n, None, None, None))
            continue
        fits.append(
            PeriodFit(start, stats.n, reg.silver_price_, reg.gold_price_per_carat_, reg.report_)
        )
    return fits
