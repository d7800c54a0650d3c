// How numbers and dates read on the page. Amounts arrive as strings with two decimals
// ("250.10") and estimates as full-precision numbers: both are shown as dollars.

const dollars = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
const counts = new Intl.NumberFormat("en-US");
const when = new Intl.DateTimeFormat("en-US", { dateStyle: "medium", timeStyle: "short" });

export const DASH = "—";

export function money(value) {
  return value === null || value === undefined ? DASH : dollars.format(Number(value));
}

export function moneyRange(lower, upper) {
  return `${money(lower)} – ${money(upper)}`;
}

export function count(value) {
  return value === null || value === undefined ? DASH : counts.format(value);
}

export function plural(n, noun) {
  return `${count(n)} ${noun}${n === 1 ? "" : "s"}`;
}

export function fixed(value, digits) {
  return value === null || value === undefined ? DASH : Number(value).toFixed(digits);
}

export function dateTime(text) {
  return when.format(new Date(text));
}

// Axis labels: as many decimals as the tick step needs, and no more.
export function tickFormatter(step, { currency = false } = {}) {
  const digits = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
  const format = new Intl.NumberFormat("en-US", {
    ...(currency ? { style: "currency", currency: "USD" } : {}),
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
  return (value) => format.format(value);
}

// Large costs on a log axis: 1.2k, 35k, 2.8M.
const compact = new Intl.NumberFormat("en-US", {
  notation: "compact",
  maximumSignificantDigits: 3,
});
export function compactNumber(value) {
  return compact.format(value);
}
