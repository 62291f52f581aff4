/* sopreel training player: the video in every built language, its subtitles, the AI notice,
 * what the learner watched, the quiz, and what the LMS (SCORM 1.2, SCORM 2004) or LRS (xAPI)
 * records. Everything it needs is in the package; it loads nothing from elsewhere.
 *
 * Watching is counted in BUCKETS slices of the video's length: a slice counts once playback
 * has run through it (a seek skips what lies between). The slices are kept as a fraction of
 * the length, so changing language keeps what was watched. Completion: `completeAt` of the
 * slices watched. With `requireFullWatch`, seeking ahead of the first unwatched slice is
 * refused.
 */
(function () {
  "use strict";
  var BUCKETS = 200;
  var config = JSON.parse(document.getElementById("sopreel-config").textContent);
  var video = document.getElementById("video");
  var byCode = {};
  config.languages.forEach(function (entry) { byCode[entry.code] = entry; });
  var state = {
    language: null, watched: new Array(BUCKETS).fill(false), covered: new Array(BUCKETS).fill(0),
    last: null, complete: false,
    quizResult: null, started: Date.now(), experienced: false
  };

  function text(key, values) {
    var table = config.strings[state.language] || config.strings.en;
    var said = table[key] || config.strings.en[key] || key;
    Object.keys(values || {}).forEach(function (name) {
      said = said.split("{" + name + "}").join(String(values[name]));
    });
    return said;
  }

  // ---- Where results go: an LMS through its SCORM API, an LRS, or nowhere (html) ----------

  function findApi(name) {
    // The SCORM discovery walk: this window and its parents, then the window that opened the
    // top one (an LMS that launches content in a pop-up) and its parents.
    function climb(win) {
      for (var hops = 0; win && hops < 12; hops++) {
        try { if (win[name]) { return win[name]; } } catch (e) { return null; }   // cross-origin
        if (win.parent === win) { break; }
        win = win.parent;
      }
      return null;
    }
    var found = climb(window);
    try { if (!found && window.top.opener) { found = climb(window.top.opener); } } catch (e) { /* cross-origin */ }
    return found;
  }

  function scorm12(api) {
    return {
      start: function () {
        api.LMSInitialize("");
        var status = api.LMSGetValue("cmi.core.lesson_status");
        if (!status || status === "not attempted") { api.LMSSetValue("cmi.core.lesson_status", "incomplete"); }
        return { suspend: api.LMSGetValue("cmi.suspend_data"), done: status === "completed" || status === "passed" };
      },
      progress: function (fraction, seconds, saved) {
        api.LMSSetValue("cmi.core.lesson_location", String(Math.floor(seconds)));
        api.LMSSetValue("cmi.suspend_data", saved);
        api.LMSCommit("");
      },
      completed: function () {
        var status = api.LMSGetValue("cmi.core.lesson_status");
        if (status !== "passed" && status !== "failed") { api.LMSSetValue("cmi.core.lesson_status", "completed"); }
        api.LMSCommit("");
      },
      scored: function (percent, passed) {
        api.LMSSetValue("cmi.core.score.min", "0");
        api.LMSSetValue("cmi.core.score.max", "100");
        api.LMSSetValue("cmi.core.score.raw", String(percent));
        api.LMSSetValue("cmi.core.lesson_status", passed ? "passed" : "failed");
        api.LMSCommit("");
      },
      finish: function (complete, seconds) {
        api.LMSSetValue("cmi.core.session_time", clock12(seconds));
        api.LMSSetValue("cmi.core.exit", complete ? "" : "suspend");
        api.LMSCommit("");
        api.LMSFinish("");
      }
    };
  }

  function scorm2004(api) {
    return {
      start: function () {
        api.Initialize("");
        var status = api.GetValue("cmi.completion_status");
        if (!status || status === "unknown" || status === "not attempted") { api.SetValue("cmi.completion_status", "incomplete"); }
        return { suspend: api.GetValue("cmi.suspend_data"), done: status === "completed" };
      },
      progress: function (fraction, seconds, saved) {
        api.SetValue("cmi.progress_measure", fraction.toFixed(3));
        api.SetValue("cmi.location", String(Math.floor(seconds)));
        api.SetValue("cmi.suspend_data", saved);
        api.Commit("");
      },
      completed: function () {
        api.SetValue("cmi.completion_status", "completed");
        api.Commit("");
      },
      scored: function (percent, passed) {
        api.SetValue("cmi.score.min", "0");
        api.SetValue("cmi.score.max", "100");
        api.SetValue("cmi.score.raw", String(percent));
        api.SetValue("cmi.score.scaled", (percent / 100).toFixed(4));
        api.SetValue("cmi.success_status", passed ? "passed" : "failed");
        api.Commit("");
      },
      finish: function (complete, seconds) {
        api.SetValue("cmi.session_time", "PT" + seconds.toFixed(2) + "S");
        api.SetValue("cmi.exit", complete ? "normal" : "suspend");
        api.Commit("");
        api.Terminate("");
      }
    };
  }

  function xapi() {
    // The launch convention LMSs use for xAPI content: endpoint, auth, actor, registration
    // as query parameters; the endpoint given at packaging time when the launch has none.
    var query = new URLSearchParams(window.location.search);
    var endpoint = query.get("endpoint") || (config.lrs && config.lrs.endpoint);
    if (!endpoint) { return null; }
    if (endpoint.slice(-1) !== "/") { endpoint += "/"; }
    var auth = query.get("auth") || (config.lrs && config.lrs.auth) || null;
    var actor = query.get("actor") ? JSON.parse(query.get("actor"))
      : { objectType: "Agent", name: "Anonymous learner", account: { homePage: window.location.origin || "urn:sopreel", name: "anonymous" } };
    var registration = query.get("registration");
    var activity = query.get("activity_id") || config.activityId;

    function send(verb, result) {
      var statement = {
        actor: actor,
        verb: { id: "http://adlnet.gov/expapi/verbs/" + verb, display: { "en-US": verb } },
        object: { objectType: "Activity", id: activity, definition: {
          type: "http://adlnet.gov/expapi/activities/lesson",
          name: { "en-US": config.title } } },
        context: { language: state.language, platform: "sopreel" },
        timestamp: new Date().toISOString()
      };
      if (registration) { statement.context.registration = registration; }
      if (result) { statement.result = result; }
      var request = new XMLHttpRequest();
      request.open("POST", endpoint + "statements", true);
      request.setRequestHeader("Content-Type", "application/json");
      request.setRequestHeader("X-Experience-API-Version", "1.0.3");
      if (auth) { request.setRequestHeader("Authorization", auth); }
      request.send(JSON.stringify(statement));
    }
    return {
      start: function () { return { suspend: null, done: false }; },
      experienced: function () { send("experienced"); },
      progress: function () {},
      completed: function () {
        send("completed", { completion: true, duration: "PT" + ((Date.now() - state.started) / 1000).toFixed(1) + "S" });
      },
      scored: function (percent, passed) {
        send(passed ? "passed" : "failed", { score: { scaled: percent / 100, raw: percent, min: 0, max: 100 }, success: passed, completion: true });
      },
      finish: function () {}
    };
  }

  function connect() {
    if (config.format === "scorm12") { var api12 = findApi("API"); return api12 ? scorm12(api12) : null; }
    if (config.format === "scorm2004") { var api04 = findApi("API_1484_11"); return api04 ? scorm2004(api04) : null; }
    if (config.format === "xapi") { return xapi(); }
    return null;
  }

  function clock12(seconds) {
    var whole = Math.floor(seconds);
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    var hours = Math.floor(whole / 3600);
    return (hours < 1000 ? ("000" + hours).slice(-4) : String(hours)) + ":" +
      pad(Math.floor(whole / 60) % 60) + ":" + pad(whole % 60) + "." +
      ("0" + Math.floor((seconds - whole) * 100)).slice(-2);
  }

  var lms = connect();

  // ---- Watching --------------------------------------------------------------------------

  function fraction() {
    return state.watched.filter(Boolean).length / BUCKETS;
  }

  function firstUnwatched() {
    var index = state.watched.indexOf(false);
    return index < 0 ? 1 : index / BUCKETS;
  }

  function mark(from, to) {
    var length = video.duration;
    if (!(length > 0) || to <= from) { return; }
    var first = Math.max(0, Math.floor((from / length) * BUCKETS));
    var last = Math.min(BUCKETS, Math.ceil((to / length) * BUCKETS - 1e-9));
    for (var i = first; i < last; i++) {
      // What playback covered of each slice adds up; half of a slice watched counts it.
      var start = (i / BUCKETS) * length, end = ((i + 1) / BUCKETS) * length;
      state.covered[i] += Math.max(0, Math.min(end, to) - Math.max(start, from)) / (end - start);
      if (state.covered[i] >= 0.5 - 1e-9) { state.watched[i] = true; }
    }
  }

  function saved() {
    var bits = "";
    for (var i = 0; i < BUCKETS; i += 4) {
      var nibble = 0;
      for (var j = 0; j < 4; j++) { if (state.watched[i + j]) { nibble |= 1 << j; } }
      bits += nibble.toString(16);
    }
    return JSON.stringify({ v: 1, watched: bits, language: state.language, quiz: state.quizResult });
  }

  function restore(data) {
    try {
      var kept = JSON.parse(data);
      for (var i = 0; i < BUCKETS; i += 4) {
        var nibble = parseInt(kept.watched.charAt(i / 4), 16) || 0;
        for (var j = 0; j < 4; j++) { state.watched[i + j] = (nibble & (1 << j)) !== 0; }
      }
      if (kept.language && byCode[kept.language]) { state.language = kept.language; }
      state.quizResult = kept.quiz || null;
    } catch (e) { /* nothing kept yet */ }
  }

  var lastReport = 0;
  function update(force) {
    var done = fraction();
    var percent = Math.floor(done * 100);
    document.getElementById("watched-bar").style.width = percent + "%";
    document.getElementById("watched").textContent = state.complete ? text("complete") : text("watched", { percent: percent });
    if (!state.complete && done >= config.completeAt - 1e-9) {
      state.complete = true;
      document.getElementById("watched").textContent = text("complete");
      if (lms) { lms.progress(done, video.currentTime, saved()); lms.completed(); }
      showQuiz();
      return;
    }
    if (lms && (force || Date.now() - lastReport > 5000)) {
      lastReport = Date.now();
      lms.progress(done, video.currentTime, saved());
    }
  }

  video.addEventListener("play", function () {
    if (!state.experienced && lms && lms.experienced) { lms.experienced(); }
    state.experienced = true;
    if (state.last === null && !video.seeking) { state.last = video.currentTime; }   // from here
  });
  video.addEventListener("seeking", function () {
    if (config.requireFullWatch && video.duration > 0) {
      var allowed = firstUnwatched() * video.duration + 0.25;
      if (state.last !== null) { allowed = Math.max(allowed, state.last); }
      if (video.currentTime > allowed) { video.currentTime = Math.max(0, allowed - 0.25); }
    }
    state.last = null;   // a seek is not watching
  });
  video.addEventListener("timeupdate", function () {
    var now = video.currentTime;
    if (!video.seeking && state.last !== null && now >= state.last) { mark(state.last, now); }
    state.last = video.seeking ? null : now;
    update(false);
  });
  video.addEventListener("seeked", function () { state.last = video.currentTime; });
  video.addEventListener("ended", function () {
    if (state.last !== null) { mark(state.last, video.duration); }
    state.last = null;
    update(true);
  });

  // ---- Languages -------------------------------------------------------------------------

  function setLanguage(code, keepPlace) {
    var entry = byCode[code];
    var place = keepPlace && video.duration > 0 ? video.currentTime / video.duration : 0;
    var playing = keepPlace && !video.paused;
    state.language = code;
    state.last = null;
    document.documentElement.lang = code;
    document.getElementById("title").textContent = entry.title;
    document.title = entry.title;
    document.getElementById("notice").textContent = entry.notice;
    document.getElementById("language-label").textContent = text("language");
    while (video.firstChild) { video.removeChild(video.firstChild); }
    video.src = entry.video;
    config.languages.forEach(function (other) {
      var track = document.createElement("track");
      track.kind = "subtitles";
      track.src = other.vtt;
      track.srclang = other.code;
      track.label = other.name;
      video.appendChild(track);
    });
    video.addEventListener("loadedmetadata", function once() {
      video.removeEventListener("loadedmetadata", once);
      // The subtitles are burned into the picture: the language's track is there for screen
      // readers and for a player's own captions menu, not drawn a second time.
      for (var i = 0; i < video.textTracks.length; i++) {
        video.textTracks[i].mode = video.textTracks[i].language === code ? "hidden" : "disabled";
      }
      if (place > 0) { video.currentTime = Math.min(place, firstUnwatched()) * video.duration; }
      if (playing) { video.play(); }
      update(true);
    });
    video.load();
    if (!document.getElementById("quiz").hidden) { renderQuiz(); }
  }

  var picker = document.getElementById("language");
  config.languages.forEach(function (entry) {
    var option = document.createElement("option");
    option.value = entry.code;
    option.textContent = entry.name;
    picker.appendChild(option);
  });
  if (config.languages.length < 2) { document.getElementById("language-picker").hidden = true; }
  picker.addEventListener("change", function () { setLanguage(picker.value, true); });

  // ---- Quiz ------------------------------------------------------------------------------

  function questions() {
    return config.quiz.questions[state.language] || config.quiz.questions[config.defaultLanguage];
  }

  function renderQuiz() {
    var form = document.getElementById("quiz-form");
    form.textContent = "";
    document.getElementById("quiz-title").textContent = text("quiz");
    document.getElementById("quiz-intro").textContent = text("quiz_intro", { mark: config.quiz.passMark });
    document.getElementById("quiz-submit").textContent = text("submit");
    questions().forEach(function (question, index) {
      var set = document.createElement("fieldset");
      var legend = document.createElement("legend");
      legend.textContent = (index + 1) + ". " + question.question + (question.several ? " " + text("several") : "");
      set.appendChild(legend);
      question.choices.forEach(function (choice, n) {
        var label = document.createElement("label");
        var input = document.createElement("input");
        input.type = question.several ? "checkbox" : "radio";
        input.name = question.id;
        input.value = String(n + 1);
        label.appendChild(input);
        label.appendChild(document.createTextNode(" " + choice));
        set.appendChild(label);
      });
      form.appendChild(set);
    });
  }

  function showQuiz() {
    if (!config.quiz) { return; }
    document.getElementById("quiz").hidden = false;
    renderQuiz();
  }

  document.getElementById("quiz-submit").addEventListener("click", function () {
    var form = document.getElementById("quiz-form");
    var right = 0, all = questions(), missing = false;
    all.forEach(function (question) {
      var chosen = [];
      form.querySelectorAll("input[name='" + question.id + "']:checked").forEach(function (input) { chosen.push(Number(input.value)); });
      if (!chosen.length) { missing = true; }
      var answer = config.quiz.answers[question.id];
      if (chosen.length === answer.length && chosen.every(function (n) { return answer.indexOf(n) >= 0; })) { right++; }
    });
    var result = document.getElementById("quiz-result");
    if (missing) { result.className = ""; result.textContent = text("unanswered"); return; }
    var percent = Math.round((100 * right) / all.length);
    var passed = percent >= config.quiz.passMark;
    state.quizResult = { score: percent, passed: passed };
    result.className = passed ? "passed" : "failed";
    result.textContent = text(passed ? "passed" : "failed", { score: percent, mark: config.quiz.passMark });
    if (lms) { lms.progress(fraction(), video.currentTime, saved()); lms.scored(percent, passed); }
  });

  // ---- Start and finish ------------------------------------------------------------------

  var started = lms ? lms.start() : { suspend: null, done: false };
  if (started.suspend) { restore(started.suspend); }
  state.complete = started.done || fraction() >= config.completeAt - 1e-9;
  setLanguage(state.language || config.defaultLanguage, false);
  if (state.complete) { showQuiz(); }

  var finished = false;
  function finish() {
    if (finished || !lms) { return; }
    finished = true;
    lms.progress(fraction(), video.currentTime, saved());
    lms.finish(state.complete, (Date.now() - state.started) / 1000);
  }
  window.addEventListener("pagehide", finish);
  window.addEventListener("beforeunload", finish);
  window.sopreel = { state: state, fraction: fraction, finish: finish, config: config, mark: mark,
                     connected: lms !== null };
})();
