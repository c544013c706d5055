// facerec's page: calls the gateway's /v1 API with fetch; no framework, no build step.
"use strict";

const TOKEN_KEY = "facerec-token";
const $ = (id) => document.getElementById(id);

// The token lives in sessionStorage: it is forgotten when the tab closes.
function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// One call to the API; a failure becomes one sentence (the gallery's own, when it answered).
async function api(method, path, body) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch (err) {
    throw new Error("The gateway cannot be reached; is `facerec serve` running?");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    if (data && data.message) {
      const hint = response.status === 401 ? " Enter a token at the top of the page." : "";
      throw new Error(data.message + hint);
    }
    throw new Error(`The gateway answered HTTP ${response.status}.`);
  }
  return data;
}

async function guarded(work) {
  clearError();
  try {
    await work();
  } catch (err) {
    showError(err.message);
  }
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

// ---------------------------------------------------------------- identify

async function identify(file) {
  const figure = $("identify-figure");
  const picture = figure.querySelector(".picture");
  const image = $("identify-image");
  picture.querySelectorAll(".face").forEach((el) => el.remove());
  figure.hidden = true;
  $("identify-faces").hidden = true;
  const form = new FormData();
  form.append("image", file);
  const answer = await api("POST", "/v1/identify", form);
  if (image.src) URL.revokeObjectURL(image.src);
  image.src = URL.createObjectURL(file);
  const rows = $("identify-faces").querySelector("tbody");
  rows.replaceChildren();
  answer.faces.forEach((face, i) => {
    // A face too small or too unsure to compare was never compared: not "unknown", and no distance.
    const unidentifiable = face.not_identifiable && face.not_identifiable !== "NOT_IDENTIFIABLE_UNSPECIFIED";
    const name = unidentifiable ? "not identifiable" : face.known ? face.identity : "unknown";
    // Boxes are in pixels of the upright picture: as percentages they follow the image's shown size.
    const box = document.createElement("div");
    box.className = face.known ? "face" : unidentifiable ? "face unknown unidentifiable" : "face unknown";
    box.style.left = `${(100 * face.box.x) / answer.width}%`;
    box.style.top = `${(100 * face.box.y) / answer.height}%`;
    box.style.width = `${(100 * face.box.width) / answer.width}%`;
    box.style.height = `${(100 * face.box.height) / answer.height}%`;
    const label = document.createElement("span");
    label.textContent = `${i + 1} ${name}`;
    box.appendChild(label);
    picture.appendChild(box);
    const row = document.createElement("tr");
    row.className = "face-row";
    cell(row, String(i + 1));
    cell(row, name);
    cell(row, unidentifiable ? "—" : face.distance.toFixed(3));
    cell(row, answer.threshold.toFixed(3));
    cell(row, unidentifiable ? face.not_identifiable_reason : "");
    rows.appendChild(row);
  });
  const count = answer.faces.length;
  $("identify-summary").textContent =
    count === 0
      ? "No face found on this picture."
      : `${count} face${count > 1 ? "s" : ""}; threshold ${answer.threshold.toFixed(3)} (${answer.method})` +
        (answer.classifier_stale ? "; the classifier is being refit, the distance gate answers meanwhile." : ".");
  figure.hidden = false;
  $("identify-faces").hidden = count === 0;
}

function setUpIdentify() {
  const drop = $("identify-drop");
  $("identify-file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) guarded(() => identify(file));
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) guarded(() => identify(file));
  });
}

// ---------------------------------------------------------------- enroll

const OUTCOMES = {
  ENROLLED: "enrolled",
  MULTIPLE_FACES: "enrolled the largest of several faces",
  DUPLICATE: "already enrolled",
  NO_FACE: "no face found",
  REJECTED_QUALITY: "face too small or unsure",
  INVALID: "not usable",
};

async function enroll(event) {
  event.preventDefault();
  const list = $("enroll-results");
  list.replaceChildren();
  const form = new FormData();
  form.append("identity", $("enroll-name").value.trim());
  for (const file of $("enroll-files").files) form.append("images", file);
  const answer = await api("POST", "/v1/enroll", form);
  for (const result of answer.results) {
    const item = document.createElement("li");
    item.className = result.outcome;
    const why = result.error ? `: ${result.error.message}` : "";
    item.textContent = `${result.filename}: ${OUTCOMES[result.outcome] || result.outcome}${why}`;
    list.appendChild(item);
  }
  await listIdentities(true);
}

// ---------------------------------------------------------------- identities

let nextPage = "";

async function listIdentities(fromStart) {
  if (fromStart) nextPage = "";
  const query = new URLSearchParams({ page_size: "50", page_token: fromStart ? "" : nextPage });
  const answer = await api("GET", `/v1/identities?${query}`);
  const list = $("identities-list");
  if (fromStart) list.replaceChildren();
  for (const person of answer.identities) {
    const item = document.createElement("li");
    item.dataset.identity = person.identity;
    item.textContent = `${person.identity} (${person.face_count} face${person.face_count === 1 ? "" : "s"})`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.addEventListener("click", () =>
      guarded(async () => {
        await api("DELETE", `/v1/identities/${encodeURIComponent(person.identity)}`);
        await listIdentities(true);
      }),
    );
    item.appendChild(remove);
    list.appendChild(item);
  }
  if (fromStart && answer.identities.length === 0) {
    const item = document.createElement("li");
    item.textContent = "Nobody is enrolled yet.";
    list.appendChild(item);
  }
  nextPage = answer.next_page_token;
  $("identities-more").hidden = !nextPage;
}

// ---------------------------------------------------------------- verify

async function verify(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("image_a", $("verify-a").files[0]);
  form.append("image_b", $("verify-b").files[0]);
  const result = $("verify-result");
  result.textContent = "";
  const answer = await api("POST", "/v1/verify", form);
  result.className = answer.match ? "match" : "nomatch";
  result.textContent =
    `${answer.match ? "Same person" : "Different people"}: distance ${answer.distance.toFixed(3)}, ` +
    `threshold ${answer.threshold.toFixed(3)}.` +
    (answer.faces_a > 1 || answer.faces_b > 1 ? " Where a picture held several faces, its largest was compared." : "");
}

// ---------------------------------------------------------------- start

function start() {
  const field = $("token");
  field.value = token();
  field.addEventListener("input", () => sessionStorage.setItem(TOKEN_KEY, field.value.trim()));
  setUpIdentify();
  $("enroll-form").addEventListener("submit", (event) => guarded(() => enroll(event)));
  $("verify-form").addEventListener("submit", (event) => guarded(() => verify(event)));
  $("identities-refresh").addEventListener("click", () => guarded(() => listIdentities(true)));
  $("identities-more").addEventListener("click", () => guarded(() => listIdentities(false)));
  guarded(() => listIdentities(true));
}

start();
