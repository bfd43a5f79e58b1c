// English and Korean strings. The choice is saved in localStorage; the
// default follows navigator.language. Switching re-renders the app in place
// (no page reload) and sets <html lang>.

const STORAGE_KEY = 'riskwatch.lang';

const en = {
  'nav.label': 'Main',
  'nav.overview': 'Overview',
  'nav.merchants': 'Merchants',
  'nav.alerts': 'Alerts',
  'lang.switch': 'Switch language (EN / 한국어)',
  loading: 'Loading…',
  'error.load': 'Could not load',
  'error.status': 'Could not load the pipeline status',
  'notFound.title': 'Page not found',
  'notFound.text': 'There is no page at this address.',

  'pipeline.connecting': 'Connecting…',
  'pipeline.ready': 'Ready',
  'pipeline.catchingUp': 'Catching up',
  'pipeline.offline': 'Live stream lost',
  'pipeline.lag': 'lag {s} s',
  'pipeline.minuteDelivery': 'read once a minute',
  'pipeline.lastMinute': 'closed {time}',
  'pipeline.eps': '{n} ev/s',
  'pipeline.title': 'Pipeline status; times in',
  'pipeline.stuck': 'Pipeline stuck since {since} — {n} failures at position {position}: {error}',

  'rule.cancel_rate_spike': 'Cancel-rate spike',
  'rule.volume_drop': 'Volume drop',
  'rule.pipeline_stuck': 'Pipeline stuck',
  'state.firing': 'Firing',
  'state.resolved': 'Resolved',
  'baseline.merchant': 'merchant',
  'baseline.platform': 'platform',
  'alert.ongoing': 'ongoing',
  'values.cancel': '{c}/{a} canceled · 1h rate {rate} · {ratio} baseline',
  'values.volume': 'today {today} vs expected {expected} · drop {drop}',

  'col.id': 'ID',
  'col.name': 'Name',
  'col.rule': 'Rule',
  'col.merchant': 'Merchant',
  'col.state': 'State',
  'col.since': 'Since',
  'col.from': 'From',
  'col.to': 'To',
  'col.values': 'Values',
  'col.ack': 'Acknowledged',
  'col.score': 'Score',
  'col.rate1h': '1h rate',
  'col.baseline': 'Baseline',
  'col.ratio': 'Ratio',
  'col.drop': 'Drop',
  'col.today': 'Today',
  'col.expected': 'Expected',
  'col.dailyAvg': 'Daily avg',

  'ack.button': 'Acknowledge',
  'ack.by': 'Acknowledged by {by}',
  'ack.title': 'Acknowledge alert',
  'ack.yourName': 'Your name',
  'ack.comment': 'Comment',
  'ack.operator': 'Operator sign-in',
  'ack.credsRequired': 'Operator credentials required',
  'ack.credsRejected': 'These credentials may not acknowledge alerts',
  'ack.credsWrong': 'Wrong username or password',
  'ack.username': 'Username',
  'ack.password': 'Password',
  'ack.submit': 'Acknowledge',
  'ack.cancel': 'Cancel',
  'ack.nameRequired': 'Enter your name.',

  'chart.noData': 'No data in this range',
  'chart.time': 'Time',
  'series.approvals': 'Approvals',
  'series.cancels': 'Cancels',
  'series.approvedAmount': 'Approved amount',
  'series.canceledAmount': 'Canceled amount',
  'series.rate': '1-hour cancel rate',
  'series.baseline': '7-day baseline',
  'series.alertLine': '{m}× baseline',
  'series.todayCum': 'Today (cumulative)',
  'series.expected': 'Expected (7-day same-time mean)',
  'series.dropLine': '{p} of expected',

  'overview.title': 'Platform overview',
  'overview.subtitle': 'All merchants, per closed minute, last 3 hours (live).',
  'overview.countsChart': 'Approvals & cancels per minute',
  'overview.amountsChart': 'Approved & canceled amount per minute',
  'overview.openAlerts': 'Open alerts',
  'overview.noAlerts': 'No open alerts. All quiet.',
  'kpi.lastMinute': 'Last closed minute',
  'kpi.approvals': 'Approvals',
  'kpi.cancels': 'Cancels',
  'kpi.approvedAmount': 'Approved',
  'kpi.canceledAmount': 'Canceled',
  'kpi.cancelRate1h': 'Cancel rate (1 h)',

  'merchants.title': 'Merchants',
  'search.title': 'Find a merchant',
  'search.placeholder': 'Merchant id or name…',
  'search.hint': 'Type an id (exact) or part of a name.',
  'search.none': 'No merchant matches “{q}”.',
  'ranking.risk': 'Riskiest now',
  'ranking.riskHelp': 'Score = share of the cancel-rate-spike threshold reached over the last hour (≥ 1 fires).',
  'ranking.scoreHelp': 'c_h / (multiplier × effective baseline × max(a_h, min approvals))',
  'ranking.drop': 'Biggest volume drops (large merchants)',
  'ranking.dropHelp': 'Merchants averaging at least {amount} a day; today so far vs the same time on the last 7 days.',
  'ranking.asOf': 'as of {time}',
  'ranking.fires': 'Firing',
  'ranking.empty': 'No merchant had activity in the last hour.',
  'ranking.emptyLarge': 'No large merchants.',

  'merchant.unnamed': '(unnamed)',
  'merchant.system': 'riskwatch itself',
  'merchant.openAlerts': 'Open alerts',
  'merchant.noOpenAlerts': 'No open alerts for this merchant.',
  'merchant.countsChart': 'Approvals & cancels',
  'merchant.amountsChart': 'Approved & canceled amount',
  'merchant.rateChart': '1-hour cancel rate vs 7-day baseline',
  'merchant.baselineSource': 'baseline source: {src}',
  'merchant.bandCancel': 'cancel-rate spike alert',
  'merchant.bandVolume': 'volume drop alert',
  'merchant.history': 'Alert history (in range)',
  'merchant.noHistory': 'No alerts in this range.',
  'merchant.volumeChart': 'Cumulative approved amount vs expected',
  'range.label': 'Range',
  'range.1h': '1 h',
  'range.24h': '24 h',
  'range.7d': '7 d',
  'range.custom': 'Custom',
  'range.from': 'From',
  'range.to': 'To',
  'range.apply': 'Apply',
  'range.invalid': 'Enter both ends of the custom range.',
  'range.order': 'The range must end after it starts.',
  'range.tooMany': 'Too many points (more than {max}); choose a coarser step.',
  'range.info': '{from} – {to} ({tz}) · step {step} · {n} buckets',
  'range.zoomHint': 'Drag on a chart to zoom, double-click to reset.',
  'step.label': 'Step',
  'step.auto': 'Auto',
  'volume.day': 'Day',
  'volume.today': 'Today',
  'volume.large': 'Large merchant',
  'volume.largeText': '7-day daily average {avg} ≥ {min}: the volume-drop rule applies.',
  'volume.notLarge': 'Not large',
  'volume.notLargeText': '7-day daily average {avg} < {min}: the volume-drop rule does not apply to this merchant (shown for reference).',
  'volume.now': 'At {time}: today {today}, expected {expected}',
  'volume.endOfDay': 'Whole day {day}: {today}, expected {expected}',
  'volume.drop': 'drop {drop}',

  'alerts.title': 'Alerts',
  'alerts.none': 'No alerts match these filters.',
  'alerts.more': 'Load older alerts',
  'filter.all': 'All',
  'filter.clear': 'Clear filters',
  'filter.merchantPlaceholder': 'merchant id',
  'filter.merchantInvalid': 'digits only',
};

const ko = {
  'nav.label': '메뉴',
  'nav.overview': '개요',
  'nav.merchants': '가맹점',
  'nav.alerts': '알림',
  'lang.switch': '언어 전환 (EN / 한국어)',
  loading: '불러오는 중…',
  'error.load': '불러오지 못했습니다',
  'error.status': '파이프라인 상태를 불러오지 못했습니다',
  'notFound.title': '페이지 없음',
  'notFound.text': '이 주소에는 페이지가 없습니다.',

  'pipeline.connecting': '연결 중…',
  'pipeline.ready': '정상',
  'pipeline.catchingUp': '따라잡는 중',
  'pipeline.offline': '실시간 연결 끊김',
  'pipeline.lag': '지연 {s}초',
  'pipeline.minuteDelivery': '1분마다 읽음',
  'pipeline.lastMinute': '마감 {time}',
  'pipeline.eps': '초당 {n}건',
  'pipeline.title': '파이프라인 상태; 시간대',
  'pipeline.stuck': '파이프라인 정지: {since}부터 위치 {position}에서 {n}회 실패 — {error}',

  'rule.cancel_rate_spike': '취소율 급증',
  'rule.volume_drop': '거래액 급감',
  'rule.pipeline_stuck': '파이프라인 정지',
  'state.firing': '발생 중',
  'state.resolved': '해소됨',
  'baseline.merchant': '가맹점',
  'baseline.platform': '플랫폼',
  'alert.ongoing': '진행 중',
  'values.cancel': '취소 {c}/{a} · 1시간 취소율 {rate} · 기준선의 {ratio}',
  'values.volume': '오늘 {today} / 예상 {expected} · 감소 {drop}',

  'col.id': 'ID',
  'col.name': '이름',
  'col.rule': '규칙',
  'col.merchant': '가맹점',
  'col.state': '상태',
  'col.since': '시작',
  'col.from': '시작',
  'col.to': '종료',
  'col.values': '값',
  'col.ack': '확인',
  'col.score': '점수',
  'col.rate1h': '1시간 취소율',
  'col.baseline': '기준선',
  'col.ratio': '배율',
  'col.drop': '감소율',
  'col.today': '오늘',
  'col.expected': '예상',
  'col.dailyAvg': '일평균',

  'ack.button': '확인 처리',
  'ack.by': '{by} 확인함',
  'ack.title': '알림 확인 처리',
  'ack.yourName': '이름',
  'ack.comment': '메모',
  'ack.operator': '운영자 로그인',
  'ack.credsRequired': '운영자 인증이 필요합니다',
  'ack.credsRejected': '이 계정으로는 알림을 확인 처리할 수 없습니다',
  'ack.credsWrong': '사용자 이름 또는 비밀번호가 틀렸습니다',
  'ack.username': '사용자 이름',
  'ack.password': '비밀번호',
  'ack.submit': '확인 처리',
  'ack.cancel': '취소',
  'ack.nameRequired': '이름을 입력하세요.',

  'chart.noData': '이 기간에 데이터가 없습니다',
  'chart.time': '시각',
  'series.approvals': '승인 건수',
  'series.cancels': '취소 건수',
  'series.approvedAmount': '승인 금액',
  'series.canceledAmount': '취소 금액',
  'series.rate': '1시간 취소율',
  'series.baseline': '7일 기준선',
  'series.alertLine': '기준선 {m}배',
  'series.todayCum': '오늘 (누적)',
  'series.expected': '예상 (7일 동시각 평균)',
  'series.dropLine': '예상의 {p}',

  'overview.title': '플랫폼 개요',
  'overview.subtitle': '전체 가맹점, 마감된 분 단위, 최근 3시간 (실시간).',
  'overview.countsChart': '분당 승인·취소 건수',
  'overview.amountsChart': '분당 승인·취소 금액',
  'overview.openAlerts': '진행 중인 알림',
  'overview.noAlerts': '진행 중인 알림이 없습니다.',
  'kpi.lastMinute': '마지막 마감 분',
  'kpi.approvals': '승인',
  'kpi.cancels': '취소',
  'kpi.approvedAmount': '승인 금액',
  'kpi.canceledAmount': '취소 금액',
  'kpi.cancelRate1h': '취소율 (1시간)',

  'merchants.title': '가맹점',
  'search.title': '가맹점 찾기',
  'search.placeholder': '가맹점 ID 또는 이름…',
  'search.hint': 'ID(정확히) 또는 이름 일부를 입력하세요.',
  'search.none': '“{q}”에 맞는 가맹점이 없습니다.',
  'ranking.risk': '현재 위험 순위',
  'ranking.riskHelp': '점수 = 최근 1시간 취소율 급증 기준 도달 비율 (1 이상이면 발생).',
  'ranking.scoreHelp': 'c_h / (배수 × 유효 기준선 × max(a_h, 최소 승인 수))',
  'ranking.drop': '거래액 감소 순위 (대형 가맹점)',
  'ranking.dropHelp': '일평균 {amount} 이상 가맹점; 오늘 현재까지와 최근 7일 같은 시각 비교.',
  'ranking.asOf': '{time} 기준',
  'ranking.fires': '발생',
  'ranking.empty': '최근 1시간 동안 거래한 가맹점이 없습니다.',
  'ranking.emptyLarge': '대형 가맹점이 없습니다.',

  'merchant.unnamed': '(이름 없음)',
  'merchant.system': 'riskwatch 자체',
  'merchant.openAlerts': '진행 중인 알림',
  'merchant.noOpenAlerts': '이 가맹점에 진행 중인 알림이 없습니다.',
  'merchant.countsChart': '승인·취소 건수',
  'merchant.amountsChart': '승인·취소 금액',
  'merchant.rateChart': '1시간 취소율과 7일 기준선',
  'merchant.baselineSource': '기준선 출처: {src}',
  'merchant.bandCancel': '취소율 급증 알림',
  'merchant.bandVolume': '거래액 급감 알림',
  'merchant.history': '알림 이력 (기간 내)',
  'merchant.noHistory': '이 기간에 알림이 없습니다.',
  'merchant.volumeChart': '누적 승인 금액과 예상치',
  'range.label': '기간',
  'range.1h': '1시간',
  'range.24h': '24시간',
  'range.7d': '7일',
  'range.custom': '직접 지정',
  'range.from': '시작',
  'range.to': '종료',
  'range.apply': '적용',
  'range.invalid': '시작과 종료를 모두 입력하세요.',
  'range.order': '종료가 시작보다 뒤여야 합니다.',
  'range.tooMany': '점이 너무 많습니다 ({max}개 초과). 더 큰 단위를 고르세요.',
  'range.info': '{from} – {to} ({tz}) · 단위 {step} · {n}개 구간',
  'range.zoomHint': '차트를 드래그하면 확대, 더블클릭하면 원래대로.',
  'step.label': '단위',
  'step.auto': '자동',
  'volume.day': '날짜',
  'volume.today': '오늘',
  'volume.large': '대형 가맹점',
  'volume.largeText': '7일 일평균 {avg} ≥ {min}: 거래액 급감 규칙이 적용됩니다.',
  'volume.notLarge': '대형 아님',
  'volume.notLargeText': '7일 일평균 {avg} < {min}: 거래액 급감 규칙이 적용되지 않습니다 (참고용 표시).',
  'volume.now': '{time} 기준: 오늘 {today}, 예상 {expected}',
  'volume.endOfDay': '{day} 하루 전체: {today}, 예상 {expected}',
  'volume.drop': '감소 {drop}',

  'alerts.title': '알림',
  'alerts.none': '조건에 맞는 알림이 없습니다.',
  'alerts.more': '이전 알림 더 보기',
  'filter.all': '전체',
  'filter.clear': '필터 초기화',
  'filter.merchantPlaceholder': '가맹점 ID',
  'filter.merchantInvalid': '숫자만 입력',
};

const dictionaries = { en, ko };
let lang = 'en';
const listeners = new Set();

function stored() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

/** Picks the language: saved choice, else the browser's, else English. */
export function initLang() {
  const saved = stored();
  if (saved && dictionaries[saved]) lang = saved;
  else lang = (navigator.language || '').toLowerCase().startsWith('ko') ? 'ko' : 'en';
  document.documentElement.lang = lang;
}

export const getLang = () => lang;

export function setLang(next) {
  if (!dictionaries[next] || next === lang) return;
  lang = next;
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    /* private mode: the choice just isn't remembered */
  }
  document.documentElement.lang = lang;
  for (const fn of listeners) fn(lang);
}

export function onLangChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/**
 * Looks up a string and fills {placeholders} from vars. Falls back to
 * English, then to `fallback`, then to the key itself.
 */
export function t(key, vars, fallback) {
  let s = dictionaries[lang][key] ?? en[key] ?? fallback ?? key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, name) => (vars[name] != null ? String(vars[name]) : m));
  return s;
}
