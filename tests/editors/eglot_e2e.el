;;; eglot_e2e.el --- Emacs (batch) with eglot and the docs' configuration, driving lse-server -*- lexical-binding: t -*-
;; As a user following docs/editors.md: trust the workspace folder (lse-trusted-folders), M-x eglot on a suite ->
;; diagnostics; plain Markdown, YAML and Copilot prompt files keep their modes and servers; a .suite.json joins
;; the server; M-x eglot-code-actions: Evaluate (the default) on a buffer with an unsaved edit -> the summary;
;; Evolve -> the start message -> "Apply" in the server's question -> one undo restores the buffer; Evolve again
;; -> Cancel run (code action) -> the cancelled message; M-x lse-show-tree; a folder not trusted runs nothing.
;; Environment: LSE_CONFIG (the docs' elisp block as a file), LSE_ROOT, LSE_PROMPT, LSE_SUITE, LSE_JSON,
;; LSE_README, LSE_YAML, LSE_COPILOT, LSE_UNTRUSTED (a prompt file in a folder that is not trusted).

(package-initialize)
(load (getenv "LSE_CONFIG") nil t)
(setq lse-trusted-folders (list (getenv "LSE_ROOT")))  ; "(setq lse-trusted-folders '(...))", as the docs say

(defun lse-out (fmt &rest args)
  (princ (concat (apply #'format fmt args) "\n")))

(defun lse-fail (what)
  (lse-out "FAIL %s" what)
  (kill-emacs 1))

(defun lse-wait (seconds what pred)
  "Let the server's messages in until PRED holds, for at most SECONDS."
  (let ((deadline (+ (float-time) seconds)))
    (while (and (not (funcall pred)) (< (float-time) deadline))
      (accept-process-output nil 0.05))
    (unless (funcall pred) (lse-fail what))))

(lse-out "CONFIRM %S" eglot-confirm-server-initiated-edits)

;; what a user sees: messages in the echo area; the choices of showMessageRequest and of eglot-code-actions
;; (completing-read)
(defvar lse-messages nil)
(advice-add 'message :around
            (lambda (orig fmt &rest args)
              (let ((text (apply orig fmt args)))
                (when text (push (substring-no-properties text) lse-messages))
                text)))
(defun lse-message (regexp)
  (seq-find (lambda (m) (string-match-p regexp m)) lse-messages))
(defun lse-messages-matching (regexp)
  (seq-filter (lambda (m) (string-match-p regexp m)) lse-messages))

(defvar lse-questions nil)
(defvar lse-picks nil)
(defvar lse-pick nil "A regexp: the code action to pick from the list eglot offers.")
(advice-add 'completing-read :override
            (lambda (prompt collection &rest _)
              (let ((prompt (substring-no-properties prompt)))
                (if (string-match "\\`\\[eglot\\] Pick an action (default \\(.*\\)): \\'" prompt)
                    (let ((titles (mapcar #'car collection)))
                      (push (format "%s [%s]" (match-string 1 prompt) (mapconcat #'identity titles "|")) lse-picks)
                      (or (seq-find (lambda (title) (string-match-p lse-pick title)) titles)
                          (lse-fail (concat "no code action " lse-pick))))
                  (push (format "%s [%s]"
                                (replace-regexp-in-string
                                 "\\`\\[eglot\\] Server reports (type=[0-9]): \\(\\(?:.\\|\n\\)*\\)\nChoose an option: \\'"
                                 "\\1" prompt)
                                (mapconcat #'identity collection "|"))
                        lse-questions)
                  "Apply"))))

(defun lse-code-action (regexp)
  "M-x eglot-code-actions at point, picking the action whose title matches REGEXP."
  (let ((lse-pick regexp)
        (last-nonmenu-event ?\r))  ; invoked from the keyboard: eglot asks in the minibuffer, not a menu
    (call-interactively #'eglot-code-actions)))

(defvar lse-diagnostics nil)
(advice-add 'eglot-handle-notification :before
            (lambda (_server method &rest params)
              (when (eq method 'textDocument/publishDiagnostics)
                (push (plist-get params :diagnostics) lse-diagnostics))))

;; 1. a suite, M-x eglot: diagnostics
(find-file (getenv "LSE_SUITE"))
(call-interactively #'eglot)
(lse-wait 60 "connect" (lambda () (and (eglot-current-server) (jsonrpc-running-p (eglot-current-server)))))
(lse-wait 60 "diagnostics" (lambda () (seq-some (lambda (d) (> (length d) 0)) lse-diagnostics)))
(lse-out "DIAG %s" (plist-get (aref (seq-find (lambda (d) (> (length d) 0)) lse-diagnostics) 0) :code))
(defvar lse-server (eglot-current-server))
(lse-out "SERVER %s %s" major-mode (eieio-object-class-name lse-server))

;; 2. Markdown, YAML and a Copilot prompt file in the same folder: their own modes, no lse-server, and M-x eglot
;; there would start the mode's own server
(dolist (file (list (getenv "LSE_README") (getenv "LSE_YAML") (getenv "LSE_COPILOT")))
  (find-file file)
  (lse-out "OTHER %s %s %s %s" (file-name-nondirectory file) major-mode (eglot-current-server)
           (car (nth 2 (eglot--lookup-mode major-mode)))))

;; 3. a .suite.json joins the workspace's server
(find-file (getenv "LSE_JSON"))
(lse-wait 10 "json managed" (lambda () (eq (eglot-current-server) lse-server)))
(lse-out "JSON %s %s" major-mode (eq (eglot-current-server) lse-server))

;; 4. the prompt, with an unsaved edit that the run must score and the winner must keep
(find-file (getenv "LSE_PROMPT"))
(lse-wait 30 "prompt managed" (lambda () (eq (eglot-current-server) lse-server)))
(lse-out "PROMPT %s" major-mode)
(goto-char (point-max))
(forward-line -1)
(delete-region (line-beginning-position) (line-end-position))
(insert "t0 keep-me")
(undo-boundary)
(eglot--signal-textDocument/didChange)
(defvar lse-before (buffer-string))

;; 5. Evaluate: the default code action; the summary in the echo area
(lse-code-action "\\`Evaluate prompt\\'")
(lse-wait 120 "evaluate summary" (lambda () (lse-message "LSE evaluate of nums\\.prompt\\.md: ")))
(defun lse-result (regexp)
  (replace-regexp-in-string "\\`.*?\\(LSE \\(?:evaluate\\|evolve\\) of\\)" "\\1" (lse-message regexp)))
(lse-out "RESULT %s" (lse-result "LSE evaluate of nums\\.prompt\\.md: "))

;; 6. Evolve: the start message, the summary, the question, the edit (eglot asks nothing more for lse-server)
(lse-code-action "\\`Evolve prompt\\'")
(lse-wait 30 "start message" (lambda () (lse-message "LSE evolve of nums\\.prompt\\.md started")))
(lse-out "START %s" (lse-result "LSE evolve of nums\\.prompt\\.md started"))
(lse-wait 120 "evolve summary" (lambda () (lse-message "LSE evolve of nums\\.prompt\\.md: ")))
(lse-out "RESULT %s" (lse-result "LSE evolve of nums\\.prompt\\.md: "))
(lse-wait 60 "the edit" (lambda () (not (equal (buffer-string) lse-before))))
(dolist (q (reverse lse-questions)) (lse-out "ASKED %s" q))
(lse-wait 30 "applied message" (lambda () (lse-message "now holds the evolved instructions")))
(defvar lse-after (buffer-string))
(lse-out "APPLIED %s" (car (last (split-string lse-after "\n" t))))

;; 7. one undo restores the buffer as it was
(undo-boundary)
(let ((last-command nil)) (undo))
(lse-out "UNDO %s" (if (equal (buffer-string) lse-before) "restored" "different"))
(erase-buffer)
(insert lse-after)
(save-buffer)

;; 8. Evolve again, and cancel it with the code action
(lse-code-action "\\`Evolve prompt\\'")
(lse-wait 30 "second start" (lambda () (= 2 (length (lse-messages-matching "LSE evolve of nums\\.prompt\\.md started")))))
;; the action's title carries the progress: wait until the first round is under way (the root is scored)
(lse-wait 60 "progress in the Cancel action"
          (lambda () (seq-some (lambda (a) (string-match-p "\\`Cancel run (evolve of nums\\.prompt\\.md: round [1-9]"
                                                           (plist-get a :title)))
                               (eglot-code-actions (point-min) (point-max)))))
(lse-code-action "\\`Cancel run (evolve of nums\\.prompt\\.md: ")
(lse-wait 30 "cancelled message" (lambda () (lse-message "LSE evolve of nums\\.prompt\\.md cancelled")))
(lse-out "CANCELLED %s" (lse-result "LSE evolve of nums\\.prompt\\.md cancelled"))
(dolist (p (reverse lse-picks)) (lse-out "PICKED %s" p))

;; 9. the tree as text
(lse-show-tree)
(with-current-buffer "*lse tree*"
  (lse-out "TREE %s" (buffer-substring (point-min) (line-end-position 1))))

;; 10. a folder that is not in lse-trusted-folders: lse-server runs, untrusted, and starts nothing
(find-file (getenv "LSE_UNTRUSTED"))
(call-interactively #'eglot)
(lse-wait 60 "second server" (lambda () (and (eglot-current-server) (not (eq (eglot-current-server) lse-server))
                                              (jsonrpc-running-p (eglot-current-server)))))
(lse-out "UNTRUSTED %S %s" (plist-get (eglot-initialization-options (eglot-current-server)) :trusted)
         (condition-case err
             (progn (lse-code-action "\\`Evaluate prompt\\'") "started")
           (jsonrpc-error (alist-get 'jsonrpc-error-message (cdr err)))))

;; 11. M-x lse-trust-folder there (batch Emacs is `emacs -q': Customize keeps it for the session only): the
;; restarted server is trusted
(defvar lse-untrusted-server (eglot-current-server))
(lse-trust-folder (file-name-directory (getenv "LSE_UNTRUSTED")))
(lse-wait 60 "reconnected" (lambda () (and (eglot-current-server) (not (eq (eglot-current-server) lse-untrusted-server))
                                            (jsonrpc-running-p (eglot-current-server)))))
(lse-out "RETRUSTED %s"
         (condition-case err
             (progn (jsonrpc-request (eglot-current-server) :workspace/executeCommand
                                     `(:command "lse.showTree" :arguments [(:uri ,(eglot--path-to-uri (buffer-file-name)))]))
                    "a tree")
           (jsonrpc-error (alist-get 'jsonrpc-error-message (cdr err)))))
(ignore-errors (eglot-shutdown (eglot-current-server)))
(ignore-errors (eglot-shutdown lse-server))
(kill-emacs 0)
