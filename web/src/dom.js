// Tiny DOM builder. Everything that comes from the server (merchant names,
// alert summaries, error messages...) goes through createTextNode or
// textContent — never innerHTML — so a merchant called
// `<img src=x onerror=alert(1)>` renders as that literal text.

/**
 * h('a', {href: '/x', class: 'link', dataset: {testid: 'y'}}, 'text', child)
 * Attribute values are set with setAttribute (never parsed as HTML); `on*`
 * keys with a function value become event listeners.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value == null || value === false) continue;
      if (key === 'dataset') {
        for (const [dk, dv] of Object.entries(value)) if (dv != null) el.dataset[dk] = String(dv);
      } else if (key.startsWith('on') && typeof value === 'function') {
        el.addEventListener(key.slice(2).toLowerCase(), value);
      } else if (key === 'class') {
        el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
      } else if (key === 'value' || key === 'checked' || key === 'disabled' || key === 'selected') {
        el[key] = value;
      } else {
        el.setAttribute(key, value === true ? '' : String(value));
      }
    }
  }
  append(el, children);
  return el;
}

/** Appends children: strings/numbers become text nodes, arrays are flattened, null is skipped. */
export function append(parent, children) {
  for (const child of children) {
    if (child == null || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces all children of `parent` with `children`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** A visible message box for loading / empty / error states. */
export function message(kind, text) {
  return h('div', { class: `msg msg-${kind}`, role: kind === 'error' ? 'alert' : null }, text);
}

/** Calls fn at most once per `ms` after the last call. */
export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}
