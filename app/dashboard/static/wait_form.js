// A wait's form (docs/forms.md) as HTML fields: the JSON Schema subset dagq accepts
// (object of string, number, integer, boolean, enum, arrays of those). Used by the
// respond page (respond.js) and the run page's node panel. Text is always set as text.

import { h } from "./dom.js";

const label = (name, field, required) =>
  `${field.title || name}${required ? " *" : ""}`;

/** An enum's options keep their JSON type: a select's value is the option's JSON text. */
function enumSelect(name, field, value, required) {
  const select = h("select", { name, "data-field": name });
  if (!required) select.append(h("option", { value: "" }, "—"));
  for (const option of field.enum) {
    const o = h("option", { value: JSON.stringify(option) }, String(option));
    if (value !== undefined && JSON.stringify(value) === JSON.stringify(option)) o.selected = true;
    select.append(o);
  }
  return select;
}

function arrayInput(name, field, value) {
  const items = field.items || {};
  if (items.enum) {
    const chosen = new Set((value || []).map((v) => JSON.stringify(v)));
    return h("span", { class: "choices", "data-field": name },
      items.enum.map((option) => h("label", { class: "choice" },
        h("input", { type: "checkbox", value: JSON.stringify(option),
          checked: chosen.has(JSON.stringify(option)) }), ` ${option}`)));
  }
  const area = h("textarea", { name, "data-field": name, rows: 3, placeholder: "one per line" });
  area.value = (value || []).join("\n");
  return area;
}

function input(name, field, value, required) {
  if (field.type === "array") return arrayInput(name, field, value);
  if (field.enum) return enumSelect(name, field, value, required);
  if (field.type === "boolean") {
    return h("input", { type: "checkbox", name, "data-field": name, checked: value === true });
  }
  const numeric = field.type === "number" || field.type === "integer";
  const el = h("input", {
    type: numeric ? "number" : "text", name, "data-field": name,
    step: numeric ? (field.type === "integer" ? "1" : "any") : undefined,
    min: field.minimum, max: field.maximum, maxlength: field.maxLength,
  });
  if (value !== undefined && value !== null) el.value = String(value);
  return el;
}

/** The fields of `form` filled with `values` (else the defaults), and collect(): the data
 *  object the fields hold now (empty optional fields left out: the server fills defaults). */
export function formFields(form, values = {}) {
  const props = (form && form.properties) || {};
  const required = new Set((form && form.required) || []);
  const rows = Object.entries(props).map(([name, field]) => {
    // Own keys only: `name in {}` is true for "constructor", "toString", "__proto__"…,
    // whose inherited values would prefill the field.
    const value = Object.hasOwn(values, name) ? values[name] : field.default;
    const el = input(name, field, value, required.has(name));
    return { name, field, el, row: h("div", { class: "form-row", "data-row": name },
      h("label", { class: "form-label" }, label(name, field, required.has(name))), el,
      field.description ? h("div", { class: "small muted" }, field.description) : null,
      h("div", { class: "form-problem small" })) };
  });
  return { rows: rows.map((r) => r.row), collect: () => collect(rows) };
}

function readField(field, el) {
  if (field.type === "array") {
    if (field.items && field.items.enum) {
      return [...el.querySelectorAll("input:checked")].map((c) => JSON.parse(c.value));
    }
    const lines = el.value.split("\n").map((s) => s.trim()).filter(Boolean);
    const kind = field.items && field.items.type;
    return kind === "number" || kind === "integer" ? lines.map(Number)
      : kind === "boolean" ? lines.map((s) => s === "true") : lines;
  }
  if (field.enum) return el.value === "" ? undefined : JSON.parse(el.value);
  if (field.type === "boolean") return el.checked;
  if (el.value === "") return undefined;
  return field.type === "number" || field.type === "integer" ? Number(el.value) : el.value;
}

function collect(rows) {
  // fromEntries defines own properties: `data[name] = value` on a field named
  // "__proto__" would set the object's prototype and drop the field.
  return Object.fromEntries(rows.map(({ name, field, el }) => [name, readField(field, el)])
    .filter(([, value]) => value !== undefined));
}

/** Show the API's 422 next to the field it names (details.field), or nowhere. */
export function showProblem(container, err) {
  for (const p of container.querySelectorAll(".form-problem")) p.textContent = "";
  const field = err && err.details && err.details.field;
  const row = field && [...container.querySelectorAll("[data-row]")].find((r) => r.dataset.row === field);
  if (row) row.querySelector(".form-problem").textContent = err.message;
}
