// The demo citizen app, one page: without an authorization response in its URL it offers a SMART
// standalone launch with fhirclient (PKCE required) and is its own redirect URI; with one, it
// completes the launch and shows the patient's $summary. What the server sends is shown with
// textContent only.
"use strict";

function status(text, failed) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.className = failed ? "error" : "";
}

async function launch() {
  const config = await (await fetch("config.json")).json();
  document.getElementById("launch-box").hidden = false;
  document.getElementById("launch").addEventListener("click", () => {
    status("Đang chuyển tới trang đăng nhập…");
    FHIR.oauth2.authorize({
      iss: config.iss, clientId: config.clientId, scope: config.scope,
      redirectUri: location.origin + location.pathname, pkceMode: "required",
    }).catch((e) => status("Không bắt đầu được: " + e.message, true));
  });
}

// The lines of a section: the rows of the narrative table the server generated.
function lines(section) {
  if (!section.text || !section.text.div) return [];
  const doc = new DOMParser().parseFromString(section.text.div, "application/xhtml+xml");
  return Array.from(doc.querySelectorAll("tbody tr")).map((tr) =>
    Array.from(tr.querySelectorAll("td")).map((td) => td.textContent));
}

function element(tag, text, cls) {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = text;
  if (cls) el.className = cls;
  return el;
}

function render(bundle, patientId) {
  const composition = bundle.entry[0].resource;
  document.getElementById("title").textContent = composition.title;
  const ids = document.getElementById("identifiers");
  for (const entry of bundle.entry) {
    const r = entry.resource;
    if (r.resourceType !== "Patient") continue;
    for (const ident of r.identifier || []) {
      ids.append(element("dt", (ident.type && ident.type.text) || ident.system || "Mã"), element("dd", ident.value));
    }
  }
  const root = document.getElementById("summary");
  for (const section of composition.section) {
    const box = element("section");
    box.dataset.code = section.code.coding[0].code;
    box.append(element("h2", section.title));
    const rows = lines(section);
    if (rows.length === 0) {
      box.append(element("p", "Không có thông tin.", "empty"));
    } else {
      const list = element("ul");
      for (const [text, date] of rows) {
        const item = element("li", text);
        if (date) item.append(element("span", date, "date"));
        list.append(item);
      }
      box.append(list);
    }
    root.append(box);
  }
  status("Hồ sơ của bệnh nhân " + patientId);
  document.body.dataset.ready = "true";
}

async function summary() {
  status("Đang tải hồ sơ…");
  try {
    const client = await FHIR.oauth2.ready();
    const bundle = await client.request("Patient/" + client.patient.id + "/$summary");
    render(bundle, client.patient.id);
  } catch (e) {
    status("Không tải được hồ sơ: " + e.message, true);
    document.body.dataset.ready = "failed";
  }
}

window.addEventListener("DOMContentLoaded", () => {
  if (typeof FHIR === "undefined") {
    status("Thiếu thư viện fhirclient: chạy fhir-hub clients demo", true);
    return;
  }
  const answer = new URLSearchParams(location.search);
  (answer.has("code") || answer.has("error") ? summary() : launch());
});
