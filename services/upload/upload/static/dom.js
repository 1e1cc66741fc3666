// Building DOM without innerHTML: text is always text, never markup.

/**
 * h("a", {href: "/x", class: "link"}, "text", child) → element.
 * Attributes: `class`, `dataset` (object), `on` (event → handler), `hidden`/boolean
 * properties, anything else as an attribute; null/undefined/false values are skipped.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) { continue; }
    if (name === "class") {
      element.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name === "on") {
      for (const [event, handler] of Object.entries(value)) { element.addEventListener(event, handler); }
    } else if (name in PROPERTIES) {
      element[PROPERTIES[name]] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

const PROPERTIES = { hidden: "hidden", checked: "checked", disabled: "disabled", value: "value", selected: "selected" };

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) { continue; }
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Replace an element's children. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export const $ = (selector, root = document) => root.querySelector(selector);

let uniqueCounter = 0;
/** An id no other element of the page has. */
export function uid(prefix) {
  uniqueCounter += 1;
  return `${prefix}-${uniqueCounter}`;
}

/** Say something to screen-reader users once (the page's polite live region). */
export function announce(text) {
  const region = document.getElementById("announcer");
  if (!region) { return; }
  region.textContent = "";
  // A separate task, so that the same text twice is still announced twice.
  setTimeout(() => { region.textContent = text; }, 50);
}

/** A status badge: the colour comes from data-status in style.css. */
export function badge(status, text = status) {
  return h("span", { class: "badge", dataset: { status } }, text);
}

/** Mark the header link of the current page (aria-current). */
export function markCurrentNav() {
  for (const link of document.querySelectorAll(".site-nav a")) {
    const here = link.getAttribute("href") === window.location.pathname;
    if (here) { link.setAttribute("aria-current", "page"); }
  }
}
