// The front page: in development (the hub on its development secret) a sign-in
// that mints a token through POST /api/v1/dev/token, then links into sessions.
import { launchParameters, rest } from "./connection.js";
import { $, say } from "./ui.js";

const DEV_TOKEN = "/api/v1/dev/token";
// The sign-in the replay form carries along: the development one, or `/#token=<jwt>`.
let signedIn = launchParameters().token;
// A development sign-in is marked in the links (`&signin=dev`): the pages mint the
// next token the same way before this one expires.
let devSignIn = false;

async function developmentHub() {
  // The route exists only in development, and the hub's OpenAPI document names every
  // route it serves.
  const document = await rest("GET", "/api/v1/openapi.json");
  return DEV_TOKEN in document.paths;
}

function link(path, sessionId, token, text) {
  const a = document.createElement("a");
  a.href = `${path}?session=${encodeURIComponent(sessionId)}#token=${encodeURIComponent(token)}${devSignIn ? "&signin=dev" : ""}`;
  a.textContent = text;
  return a;
}

async function signIn(event) {
  event.preventDefault();
  const role = $("#dev-role").value;
  try {
    const { data } = await rest("POST", DEV_TOKEN, null, {
      role, center: $("#dev-center").value.trim(), sub: $("#dev-sub").value.trim(),
      name: $("#dev-name").value.trim() || null,
    });
    signedIn = data.token;
    devSignIn = true;
    if (role === "STUDENT") $("#replay-student").value = $("#dev-sub").value.trim();
    await showSessions(role, data.token);
  } catch (error) {
    say(`Sign-in failed: ${error.message}`);
  }
}

async function showSessions(role, token) {
  const out = $("#signed-in");
  const { data } = await rest("GET", "/api/v1/sessions?limit=100", token);
  const page = role === "STUDENT" ? "/student" : "/tutor";
  const ul = document.createElement("ul");
  for (const session of data) {
    const li = document.createElement("li");
    li.append(link(page, session.id, token, `${session.title} (${session.status.toLowerCase()}, ${new Date(session.starts_at).toLocaleString()})`));
    li.append(" ", replayButton(session));
    ul.append(li);
  }
  const heading = document.createElement("p");
  heading.textContent = data.length ? "Your sessions:" : "No sessions yet.";
  const parts = [heading, ul];
  if (role === "TUTOR") parts.push(newLessonForm(token));
  out.replaceChildren(...parts);
}

// Fills the replay form with this session; the student is chosen there.
function replayButton(session) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Replay…";
  button.setAttribute("aria-label", `Replay a student's board in ${session.title}`);
  button.addEventListener("click", () => {
    $("#replay-session").value = session.id;
    $("#replay-student").focus();
  });
  return button;
}

// A lesson plan for the demo: what a center would put in each enrollment's
// `exercise_content.exercises` for the student's course, lesson and level.
const DEMO_EXERCISES = [
  { id: "fractions-1", title: "Fractions 1: halves and quarters", instructions: "Shade half of the circle, then a quarter of the box." },
  { id: "fractions-2", title: "Fractions 2: equivalent fractions", instructions: "Draw 1/2 and 2/4 side by side and show they are equal." },
  { id: "fractions-3", title: "Fractions 3: adding unlike denominators", instructions: "Work out 1/3 + 1/4. Show the common denominator." },
];

function newLessonForm(token) {
  const form = document.createElement("form");
  form.innerHTML = `<h3>Start a lesson now</h3>
    <label>Title <input name="lesson" required maxlength="200" value="Fractions"></label>
    <label>Student ids (comma separated) <input name="students" value="s1, s2"></label>
    <button type="submit">Create the session</button>`;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const me = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    const now = new Date();
    try {
      const { data: session } = await rest("POST", "/api/v1/sessions", token, {
        title: form.elements.lesson.value, tutor_id: me.sub,
        starts_at: now.toISOString(), ends_at: new Date(+now + 3600e3).toISOString(),
      });
      for (const id of form.students.value.split(",").map((s) => s.trim()).filter(Boolean)) {
        await rest("POST", `/api/v1/sessions/${session.id}/enrollments`, token, {
          student_id: id, exercise_content: { exercises: DEMO_EXERCISES },
        });
      }
      await showSessions("TUTOR", token);
    } catch (error) {
      say(`Could not create the session: ${error.message}`);
    }
  });
  return form;
}

// Without a sign-in the form opens the page plainly, which then asks for one.
$("#replay-form").addEventListener("submit", (event) => {
  if (!signedIn) return;
  event.preventDefault();
  const query = new URLSearchParams(new FormData(event.target));
  location.assign(`/replay?${query}#token=${encodeURIComponent(signedIn)}`);
});

if (await developmentHub()) {
  $("#dev").hidden = false;
  $("#dev-form").addEventListener("submit", signIn);
  $("#dev-role").addEventListener("change", () => {
    const student = $("#dev-role").value === "STUDENT";
    $("#dev-sub").value = student ? "s1" : "tutor-1";
    $("#dev-name").value = student ? "Sam Student" : "Ada Tutor";
  });
}
