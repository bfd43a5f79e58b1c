// Formatting of times (always in the business time zone reported by
// /api/status), KRW amounts and rates.

import { getLang } from './i18n.js';

let timeZone = 'Asia/Seoul';
const dtfCache = new Map();

export function setTimeZone(tz) {
  if (tz && tz !== timeZone) {
    timeZone = tz;
    dtfCache.clear();
  }
}
export const getTimeZone = () => timeZone;

const numberLocale = () => (getLang() === 'ko' ? 'ko-KR' : 'en-US');

// One formatter per zone giving numeric parts; we assemble "YYYY-MM-DD HH:mm"
// ourselves so tables read the same in both languages.
function partsFormatter(tz) {
  let f = dtfCache.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz, hourCycle: 'h23',
      year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
    dtfCache.set(tz, f);
  }
  return f;
}

/** Wall-clock parts of an instant (ms) in a zone: {year, month, day, hour, minute, second}. */
export function zonedParts(ms, tz = timeZone) {
  const out = {};
  for (const p of partsFormatter(tz).formatToParts(new Date(ms))) {
    if (p.type !== 'literal') out[p.type] = Number(p.value);
  }
  if (out.hour === 24) out.hour = 0;
  return out;
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

function toMs(v) {
  if (v == null || v === '') return null;
  if (typeof v === 'number') return v;
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? null : ms;
}

/** "2026-11-25 16:13" in the business zone; "—" for null. */
export function fmtDateTime(v, { seconds = false } = {}) {
  const ms = toMs(v);
  if (ms == null) return '—';
  const p = zonedParts(ms);
  let s = `${p.year}-${pad(p.month)}-${pad(p.day)} ${pad(p.hour)}:${pad(p.minute)}`;
  if (seconds) s += `:${pad(p.second)}`;
  return s;
}

/** "16:13" in the business zone. */
export function fmtTime(v) {
  const ms = toMs(v);
  if (ms == null) return '—';
  const p = zonedParts(ms);
  return `${pad(p.hour)}:${pad(p.minute)}`;
}

/** "YYYY-MM-DD" (business day) of an instant. */
export function fmtDay(v) {
  const ms = toMs(v);
  if (ms == null) return '';
  const p = zonedParts(ms);
  return `${p.year}-${pad(p.month)}-${pad(p.day)}`;
}

/** Value for an <input type="datetime-local">: the instant's wall time in the business zone. */
export function toZonedInput(ms) {
  const p = zonedParts(ms);
  return `${p.year}-${pad(p.month)}-${pad(p.day)}T${pad(p.hour)}:${pad(p.minute)}`;
}

/**
 * Interprets "YYYY-MM-DDTHH:mm" as wall time in the business zone and returns
 * the instant (ms). Two passes of offset correction settle DST edges.
 */
export function fromZonedInput(value, tz = timeZone) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(value || '');
  if (!m) return null;
  const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
  const offset = (ms) => {
    const p = zonedParts(ms, tz);
    return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(ms / 1000) * 1000;
  };
  let guess = wall - offset(wall);
  guess = wall - offset(guess);
  return guess;
}

export function fmtInt(n) {
  if (n == null || Number.isNaN(n)) return '—';
  return new Intl.NumberFormat(numberLocale(), { maximumFractionDigits: 0 }).format(n);
}

/** "₩1,234,567" — amounts are integer KRW. */
export function fmtKRW(n) {
  if (n == null || Number.isNaN(n)) return '—';
  return '₩' + new Intl.NumberFormat(numberLocale(), { maximumFractionDigits: 0 }).format(Math.round(n));
}

/** Short form for chart axes: "₩120M" / "₩1.2억". */
export function fmtKRWCompact(n) {
  if (n == null || Number.isNaN(n)) return '';
  return '₩' + new Intl.NumberFormat(numberLocale(), { notation: 'compact', maximumFractionDigits: 1 }).format(n);
}

export function fmtCompact(n) {
  if (n == null || Number.isNaN(n)) return '';
  return new Intl.NumberFormat(numberLocale(), { notation: 'compact', maximumFractionDigits: 1 }).format(n);
}

/** 0.0258 -> "2.58%". */
export function fmtPct(x, digits = 2) {
  if (x == null || Number.isNaN(x)) return '—';
  return new Intl.NumberFormat(numberLocale(), {
    style: 'percent', minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(x);
}

/** 23.456 -> "23.5×". */
export function fmtRatio(x) {
  if (x == null || Number.isNaN(x)) return '—';
  return new Intl.NumberFormat(numberLocale(), { maximumFractionDigits: x < 10 ? 2 : 1 }).format(x) + '×';
}

export function fmtDecimal(x, digits = 1) {
  if (x == null || Number.isNaN(x)) return '—';
  return new Intl.NumberFormat(numberLocale(), { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(x);
}
