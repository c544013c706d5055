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

// The collection every action works on: the picker's (default until another is chosen).
function collection() {
  return $("collection").value || "default";
}

// A gallery route of the chosen collection: /v1/collections/{collection}/...
function inCollection(path) {
  return `/v1/collections/${encodeURIComponent(collection())}${path}`;
}

async function send(method, path, body, headers = {}) {
  if (token()) headers.Authorization = `Bearer ${token()}`;
  try {
    return await fetch(path, { method, headers, body });
  } catch (err) {
    throw new Error("The gateway cannot be reached; is `facerec serve` running?");
  }
}

// One call to the API; a failure becomes one sentence (the gallery's own, when it answered).
async function api(method, path, body, headers) {
  const response = await send(method, path, body, headers);
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const hint = response.status === 401 ? " Enter a token at the top of the page." : "";
    const error = new Error(data && data.message ? data.message + hint : `The gateway answered HTTP ${response.status}.`);
    error.status = response.status;
    throw error;
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
  const answer = await api("POST", inCollection("/identify"), form);
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
    // Emptied, so that picking the same file again (in another collection) is a change again.
    event.target.value = "";
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
  const answer = await api("POST", inCollection("/enroll"), form);
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
// Each listing's number: an answer that arrives after a later listing began (another collection was
// chosen meanwhile) is dropped rather than shown over the later one.
let listing = 0;

async function listIdentities(fromStart) {
  const mine = ++listing;
  if (fromStart) nextPage = "";
  const query = new URLSearchParams({ page_size: "50", page_token: fromStart ? "" : nextPage });
  const answer = await api("GET", inCollection(`/identities?${query}`));
  if (mine !== listing) return;
  const list = $("identities-list");
  if (fromStart) list.replaceChildren();
  for (const person of answer.identities) list.appendChild(identityItem(person));
  if (fromStart && answer.identities.length === 0) {
    const item = document.createElement("li");
    item.textContent = "Nobody is enrolled yet.";
    list.appendChild(item);
  }
  nextPage = answer.next_page_token;
  $("identities-more").hidden = !nextPage;
}

function faces(count) {
  return `${count} face${count === 1 ? "" : "s"}`;
}

function button(text, className, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = className;
  element.textContent = text;
  element.addEventListener("click", () => guarded(onClick));
  return element;
}

// One enrolled person: name and face count, Remove; opened, the faces' thumbnails and a rename form.
function identityItem(person) {
  const name = person.identity;
  const item = document.createElement("li");
  item.dataset.identity = name;
  const title = document.createElement("span");
  title.className = "identity-name";
  title.textContent = `${name} (${faces(person.face_count)})`;
  item.appendChild(title);
  item.appendChild(
    button("Remove", "remove-identity", async () => {
      await api("DELETE", inCollection(`/identities/${encodeURIComponent(name)}`));
      await listIdentities(true);
    }),
  );
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.textContent = "Faces and name";
  details.appendChild(summary);
  const gallery = document.createElement("div");
  gallery.className = "thumbs";
  details.appendChild(gallery);
  details.appendChild(renameForm(name));
  details.addEventListener("toggle", () => {
    if (details.open) guarded(() => showFaces(name, gallery));
  });
  item.appendChild(details);
  return item;
}

// Each face of the identity: its kept picture (fetched with the token, shown from a blob: URL), or a
// placeholder for a face kept without one; each with its own Remove.
// The gallery answers an identity's faces in pages of 1000: read them all.
async function showFaces(name, gallery) {
  const faces = [];
  let token = "";
  do {
    const query = token ? `?page_token=${encodeURIComponent(token)}` : "";
    const page = await api("GET", inCollection(`/identities/${encodeURIComponent(name)}${query}`));
    faces.push(...page.faces);
    token = page.next_page_token || "";
  } while (token);
  gallery.querySelectorAll("img").forEach((img) => URL.revokeObjectURL(img.src));
  gallery.replaceChildren();
  for (const face of faces) {
    const thumb = document.createElement("figure");
    thumb.className = "thumb";
    thumb.dataset.faceId = String(face.face_id);
    if (face.has_picture) {
      const img = document.createElement("img");
      img.alt = `face ${face.face_id} of ${name}`;
      thumb.appendChild(img);
      showPicture(img, face.face_id).catch(() => img.replaceWith(placeholder()));
    } else {
      thumb.appendChild(placeholder());
    }
    const caption = document.createElement("figcaption");
    caption.textContent = `#${face.face_id}`;
    caption.appendChild(
      button("Remove", "remove-face", async () => {
        await api("DELETE", inCollection(`/faces/${face.face_id}`));
        thumb.remove();
        await listIdentities(true);
      }),
    );
    thumb.appendChild(caption);
    gallery.appendChild(thumb);
  }
}

function placeholder() {
  const none = document.createElement("div");
  none.className = "placeholder";
  none.textContent = "no picture";
  none.title = "This face was enrolled without keeping a picture (as an embedding, or before pictures were kept).";
  return none;
}

async function showPicture(img, faceId) {
  const response = await send("GET", inCollection(`/faces/${faceId}/picture`));
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  img.src = URL.createObjectURL(await response.blob());
}

function renameForm(name) {
  const form = document.createElement("form");
  form.className = "rename";
  const field = document.createElement("input");
  field.className = "new-name";
  field.required = true;
  field.maxLength = 128;
  field.value = name;
  field.setAttribute("aria-label", `new name for ${name}`);
  const submit = document.createElement("button");
  submit.type = "submit";
  submit.textContent = "Rename";
  form.append(field, submit);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(async () => {
      const body = JSON.stringify({ new_name: field.value.trim() });
      const path = inCollection(`/identities/${encodeURIComponent(name)}:rename`);
      await api("POST", path, body, { "Content-Type": "application/json" });
      await listIdentities(true);
    });
  });
  return form;
}

// ---------------------------------------------------------------- collections

// The picker lists the collections the token may use; an older gallery without collections (501) has
// only `default`, which the page then keeps using.
async function listCollections() {
  const picker = $("collection");
  const chosen = collection();
  let answer;
  try {
    answer = await api("GET", "/v1/collections?page_size=1000");
  } catch (err) {
    if (err.status === 501) return;
    throw err;
  }
  const names = answer.collections.map((c) => c.name);
  if (!names.includes("default")) names.unshift("default");
  picker.replaceChildren(...names.map((name) => new Option(name, name, false, name === chosen)));
  picker.value = names.includes(chosen) ? chosen : "default";
}

// Another collection: nothing shown belongs to it, so the results go and its people are listed.
async function chooseCollection() {
  $("identify-figure").hidden = true;
  $("identify-faces").hidden = true;
  $("enroll-results").replaceChildren();
  $("verify-result").textContent = "";
  await listIdentities(true);
}

// ---------------------------------------------------------------- verify

async function verify(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("image_a", $("verify-a").files[0]);
  form.append("image_b", $("verify-b").files[0]);
  const result = $("verify-result");
  result.textContent = "";
  const answer = await api("POST", inCollection("/verify"), form);
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
  $("identities-refresh").addEventListener("click", () =>
    guarded(async () => {
      await listCollections();
      await listIdentities(true);
    }),
  );
  $("identities-more").addEventListener("click", () => guarded(() => listIdentities(false)));
  $("collection").addEventListener("change", () => guarded(chooseCollection));
  guarded(async () => {
    await listCollections();
    await listIdentities(true);
  });
}

start();
