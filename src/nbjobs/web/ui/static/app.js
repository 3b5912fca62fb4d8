// nbjobs app: the small amount of script the pages use. Plain JavaScript, no build step, no third party.
// Every page works without it (forms post, pages reload); with it, rows and the job page follow the
// server's event streams (docs/app.md), the "Opening…" page goes on to JupyterLab as soon as the notebook
// is open, cancel stays on the page, the run form checks types before submitting, and a notebook can be
// dropped on the upload form.
"use strict";

(function () {
  const ENDED = ["COMPLETED", "FAILED", "CANCELLED"];
  const csrf = () => document.body.dataset.csrf || "";

  function setStatus(root, status) {
    root.querySelectorAll("[data-status]").forEach((el) => {
      el.textContent = status;
      el.className = "status s-" + status.toLowerCase();
    });
  }

  function setBar(root, percent) {
    root.querySelectorAll("[data-bar]").forEach((bar) => {
      bar.value = percent;
      bar.textContent = percent + "%";
    });
  }

  function text(root, selector, value) {
    const el = root.querySelector(selector);
    if (el) el.textContent = value;
    return el;
  }

  function duration(ms) {
    const s = ms / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    const m = Math.floor(s / 60), sec = Math.floor(s % 60);
    if (m < 60) return m + " min " + String(sec).padStart(2, "0") + " s";
    return Math.floor(m / 60) + " h " + String(m % 60).padStart(2, "0") + " min";
  }

  // -- one job -------------------------------------------------------------------------------------------
  function followJob(root) {
    const tail = root.querySelector("[data-tail]");
    const ends = new Map(); // "cell:stream" -> characters of that stream already shown
    let start = Number(root.dataset.start) || 0;
    let end = Number(root.dataset.end) || 0;
    let status = "";
    const offset = { value: 0 }; // server clock minus ours, from the snapshots' times

    function remember(snapshot) {
      (snapshot.output || []).forEach((t) => ends.set(t.cellIndex + ":" + t.name, t.end));
    }

    function follow(snapshot) {
      (snapshot.output || []).forEach((t) => {
        const key = t.cellIndex + ":" + t.name;
        const last = ends.get(key) || 0;
        if (t.end <= last) return;
        const kept = t.text.length;
        let add = "";
        if (t.end - kept > last) add += "[... " + (t.end - kept - last) + " characters not kept ...]\n";
        add += t.text.slice(Math.max(0, kept - (t.end - last)));
        ends.set(key, t.end);
        tail.textContent += add;
        tail.scrollTop = tail.scrollHeight;
      });
    }

    function show(snapshot) {
      status = snapshot.status;
      setStatus(root, status);
      const cells = snapshot.cells || [];
      const done = cells.filter((c) => c.state !== "executing").length;
      const percent = status === "COMPLETED" ? 100 : (snapshot.progress || {}).percent || 0;
      setBar(root, percent);
      text(root, "[data-cells]", snapshot.codeCells ? done + " of " + snapshot.codeCells + " cells" : "");
      text(root, "[data-message]", (snapshot.progress || {}).message || "");
      if (snapshot.startTime) start = snapshot.startTime;
      end = snapshot.endTime || 0;
      follow(snapshot);
      const failure = snapshot.failure;
      const box = root.querySelector("[data-failure]");
      if (failure && box) {
        box.hidden = false;
        text(box, "[data-reason]", failure.reason || "");
        text(box, "[data-failure-message]", failure.message || "");
        const cell = box.querySelector("[data-failed-cell]");
        if (failure.cellIndex !== undefined && failure.cellIndex !== null) {
          cell.hidden = false;
          text(box, "[data-cell-index]", String(failure.cellIndex));
          text(box, "[data-ename]", failure.ename || "");
          text(box, "[data-evalue]", (failure.evalue || "").replace(/\x1b\[[0-9;]*[A-Za-z]/g, ""));
        }
        const trace = (failure.traceback || []).join("\n").replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
        const pre = text(box, "[data-traceback]", trace);
        if (pre) pre.hidden = !trace;
      }
      if (ENDED.includes(status)) ended();
      tick();
    }

    function ended() {
      const cancel = root.querySelector("[data-cancel]");
      if (cancel) cancel.hidden = true;
      const result = root.querySelector("[data-result]");
      if (result && result.hidden) {
        // the job's results say whether an executed notebook was stored (not when it ended unstarted)
        fetch(result.dataset.job, { credentials: "same-origin" })
          .then((answer) => answer.json())
          .then((job) => job.results && job.results.hasOutputNotebook)
          .catch(() => true)
          .then((has) => {
            result.hidden = false;
            result.querySelector("[data-no-output]").hidden = Boolean(has);
            result.querySelector("[data-has-output]").hidden = !has;
            const frame = result.querySelector("[data-frame]");
            if (has && frame && !frame.getAttribute("src")) frame.src = frame.dataset.src;
          });
      }
    }

    function tick() {
      const el = root.querySelector("[data-elapsed]");
      if (!el || !start) return;
      const now = end || Date.now() + offset.value;
      el.textContent = duration(Math.max(0, now - start));
    }

    try {
      remember(JSON.parse(root.dataset.snapshot || "{}"));
    } catch (e) { /* the page still shows the server's rendering */ }
    const timer = setInterval(() => { if (!ENDED.includes(status)) tick(); }, 1000);
    const source = new EventSource(root.dataset.events);
    source.addEventListener("job", (e) => show(JSON.parse(e.data)));
    source.addEventListener("end", () => { source.close(); clearInterval(timer); });
    source.addEventListener("error", (e) => {
      if (e.data) { source.close(); clearInterval(timer); } // the server's error event: the token ended
    });

    const cancel = root.querySelector("[data-cancel]");
    if (cancel) {
      cancel.addEventListener("submit", async (e) => {
        e.preventDefault();
        const button = cancel.querySelector("button");
        button.disabled = true;
        const body = new FormData(cancel);
        body.set("f", "json");
        const answer = await fetch(cancel.action, { method: "POST", body, headers: { "X-CSRF-Token": csrf() } });
        const data = await answer.json().catch(() => ({}));
        if (data.jobStatus) setStatus(root, data.jobStatus);
        else button.disabled = false;
      });
    }
  }

  // -- the job list --------------------------------------------------------------------------------------
  function followList(list, url) {
    const notice = document.querySelector("[data-new-jobs]");
    const source = new EventSource(url);
    source.addEventListener("job", (e) => {
      const change = JSON.parse(e.data);
      const row = list.querySelector('tr[data-job-id="' + CSS.escape(change.jobId) + '"]');
      if (!row) {
        if (notice) notice.hidden = false;
        return;
      }
      setStatus(row, change.status);
      const progress = change.progress || {};
      setBar(row, change.status === "COMPLETED" ? 100 : progress.percent || 0);
      text(row, "[data-message]", progress.message || "");
    });
    source.addEventListener("reset", () => { if (notice) notice.hidden = false; });
    source.addEventListener("error", (e) => { if (e.data) source.close(); });
  }

  // -- an openNotebook job: on to JupyterLab once it is open ------------------------------------------------
  function followOpening(root) {
    const enter = () => window.location.replace(root.dataset.enter); // the opening page leaves the history
    if (root.dataset.state === "COMPLETED") return enter();
    if (ENDED.includes(root.dataset.state)) return;

    function show(snapshot) {
      const status = snapshot.status;
      setStatus(root, status);
      const progress = snapshot.progress || {};
      setBar(root, status === "COMPLETED" ? 100 : progress.percent || 0);
      text(root, "[data-message]", progress.message || "");
      if (!ENDED.includes(status)) return;
      root.querySelector("[data-enter-wait]").hidden = true;
      if (status === "COMPLETED") {
        root.querySelector("[data-enter-ready]").hidden = false;
        enter();
        return;
      }
      const box = root.querySelector("[data-failure]");
      const failure = snapshot.failure || {};
      text(box, "[data-failure-message]", failure.message || (status === "CANCELLED" ? "The opening was cancelled." : ""));
      box.hidden = false;
    }

    const source = new EventSource(root.dataset.events);
    source.addEventListener("job", (e) => show(JSON.parse(e.data)));
    source.addEventListener("end", () => source.close());
    source.addEventListener("error", (e) => {
      if (e.data) source.close(); // the server's error event: the token ended
      if (source.readyState === EventSource.CLOSED) setTimeout(() => window.location.reload(), 2000);
    });
  }

  // -- the run form --------------------------------------------------------------------------------------
  const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

  function problemOf(field) {
    const kind = field.dataset.kind;
    const value = field.value.trim();
    if (kind === "number") {
      if (!value) return "";
      if (!NUMBER.test(value)) return "must be a number, such as 3 or 2.5";
      if (!isFinite(Number(value))) return "must be a finite number";
    } else if (kind === "json" || kind === "object") {
      if (!value) return "";
      let parsed;
      try { parsed = JSON.parse(value); } catch (err) {
        return "must be JSON (a list [..], an object {..}, a number, a string in quotes)";
      }
      if (kind === "object" && (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))) {
        return "must be a JSON object of names to values";
      }
    }
    return "";
  }

  function checkRunForm(form) {
    form.addEventListener("submit", (e) => {
      let first = null;
      form.querySelectorAll("[data-kind]").forEach((field) => {
        const problem = problemOf(field);
        const error = field.closest("[data-field]").querySelector("[data-error]");
        if (error) error.textContent = problem;
        if (problem) {
          field.setAttribute("aria-invalid", "true");
          first = first || field;
        } else {
          field.removeAttribute("aria-invalid");
        }
      });
      if (first) {
        e.preventDefault();
        first.focus();
      }
    });
  }

  // -- drag and drop -------------------------------------------------------------------------------------
  function dropzone(form) {
    const input = form.querySelector('input[type="file"]');
    ["dragenter", "dragover"].forEach((name) => form.addEventListener(name, (e) => {
      e.preventDefault();
      form.classList.add("dragging");
    }));
    ["dragleave", "drop"].forEach((name) => form.addEventListener(name, () => form.classList.remove("dragging")));
    form.addEventListener("drop", (e) => {
      e.preventDefault();
      if (!e.dataTransfer || !e.dataTransfer.files.length) return;
      input.files = e.dataTransfer.files;
      form.requestSubmit();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-job]").forEach(followJob);
    document.querySelectorAll("[data-opening]").forEach(followOpening);
    const list = document.querySelector("[data-live-list]");
    const stream = document.querySelector("[data-list-stream]");
    if (list && stream) followList(list, stream.dataset.listStream);
    document.querySelectorAll("[data-run-form]").forEach(checkRunForm);
    document.querySelectorAll("[data-dropzone]").forEach(dropzone);
  });
})();

/* tasks: the cron builder of the task form. The server composes the expression and computes the next runs
   (GET …/tasks/preview?f=json, the scheduler's own code); this only asks it again, debounced, as the
   inputs change, shows the inputs of the chosen "Repeat", and turns to "custom" when the expression is typed. */
(function () {
  const WAIT_MS = 250;

  function taskForm(form) {
    const repeat = form.querySelector("[data-repeat]");
    const cron = form.querySelector("[data-cron]");
    const words = form.querySelector("[data-preview-words]");
    const list = form.querySelector("[data-preview-runs]");
    const empty = form.querySelector("[data-preview-empty]");
    const problem = form.querySelector("[data-preview-error]");
    const errors = {};
    form.querySelectorAll("[data-error-for]").forEach((el) => { errors[el.dataset.errorFor] = el; });
    const fieldOf = { cron: cron, timeZone: form.querySelector('[name="timeZone"]') };
    let timer = 0;
    let asked = 0;

    function showChosen() {
      form.querySelectorAll("[data-for]").forEach((el) => {
        el.hidden = !el.dataset.for.split(" ").includes(repeat.value);
      });
    }

    function setError(name, message) {
      Object.keys(errors).forEach((key) => {
        errors[key].textContent = key === name ? message : "";
        if (fieldOf[key]) {
          if (key === name && message) fieldOf[key].setAttribute("aria-invalid", "true");
          else fieldOf[key].removeAttribute("aria-invalid");
        }
      });
    }

    function show(answer) {
      if (answer.error) {
        const message = answer.error.message || "The schedule is not valid.";
        setError(message.startsWith("Unknown time zone") ? "timeZone" : "cron", message);
        words.textContent = "";
        list.replaceChildren();
        empty.hidden = true;
        problem.textContent = "No preview: correct the schedule first.";
        return;
      }
      setError("", "");
      problem.textContent = "";
      if (repeat.value !== "custom") cron.value = answer.cron;
      words.textContent = answer.description;
      list.replaceChildren(...answer.runs.map((run) => {
        const item = document.createElement("li");
        const time = document.createElement("time");
        time.dateTime = run.iso;
        time.textContent = run.text;
        item.append(time);
        return item;
      }));
      empty.hidden = answer.runs.length > 0;
    }

    async function refresh() {
      const query = new URLSearchParams();
      form.querySelectorAll("[data-schedule]").forEach((el) => {
        if (el.type === "checkbox") { if (el.checked) query.append(el.name, el.value); }
        else query.append(el.name, el.value);
      });
      query.set("f", "json");
      const mine = ++asked;
      const answer = await fetch(form.dataset.preview + "?" + query, { credentials: "same-origin" })
        .then((reply) => reply.json())
        .catch(() => null);
      if (answer && mine === asked) show(answer);
    }

    function changed(e) {
      if (!e.target.matches("[data-schedule]")) return;
      if (e.target === cron && e.type === "input") repeat.value = "custom";
      showChosen();
      clearTimeout(timer);
      timer = setTimeout(refresh, WAIT_MS);
    }

    form.addEventListener("input", changed);
    form.addEventListener("change", changed);
    showChosen();
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-task-form]").forEach(taskForm);
  });
})();
