;;; eglot_e2e.el --- Emacs (batch) with eglot and the docs' configuration, driving lse-server -*- lexical-binding: t -*-
;; diagnostics on a suite -> Evaluate (code action) on a buffer with an unsaved edit -> the summary message ->
;; Evolve -> "Apply" in the question the server asks -> the buffer holds the winner -> one undo restores it ->
;; M-x lse-show-tree. Environment: LSE_CONFIG (the docs' elisp block as a file), LSE_PROMPT, LSE_SUITE.

(package-initialize)
(load (getenv "LSE_CONFIG") nil t)

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

;; what a user sees: messages in the echo area, the choices of showMessageRequest (completing-read)
(defvar lse-messages nil)
(advice-add 'message :around
            (lambda (orig fmt &rest args)
              (let ((text (apply orig fmt args)))
                (when text (push (substring-no-properties text) lse-messages))
                text)))
(defun lse-message (regexp)
  (seq-find (lambda (m) (string-match-p regexp m)) lse-messages))

(defvar lse-questions nil)
(advice-add 'completing-read :override
            (lambda (prompt collection &rest _)
              (push (format "%s [%s]"
                            (replace-regexp-in-string
                             "\\`\\[eglot\\] Server reports (type=[0-9]): \\(\\(?:.\\|\n\\)*\\)\nChoose an option: \\'"
                             "\\1" (substring-no-properties prompt))
                            (mapconcat #'identity collection "|"))
                    lse-questions)
              "Apply"))

(defvar lse-diagnostics nil)
(advice-add 'eglot-handle-notification :before
            (lambda (_server method &rest params)
              (when (eq method 'textDocument/publishDiagnostics)
                (push (plist-get params :diagnostics) lse-diagnostics))))

;; 1. diagnostics on a suite
(find-file (getenv "LSE_SUITE"))
(apply #'eglot (eglot--guess-contact))
(lse-wait 60 "connect" (lambda () (and (eglot-current-server) (jsonrpc-running-p (eglot-current-server)))))
(lse-wait 60 "diagnostics" (lambda () (seq-some (lambda (d) (> (length d) 0)) lse-diagnostics)))
(lse-out "DIAG %s" (plist-get (aref (seq-find (lambda (d) (> (length d) 0)) lse-diagnostics) 0) :code))
(defvar lse-server (eglot-current-server))

;; 2. the prompt, with an unsaved edit that the run must score and the winner must keep
(find-file (getenv "LSE_PROMPT"))
(unless (eglot-current-server) (eglot--maybe-activate-editing-mode))
(lse-wait 30 "prompt managed" (lambda () (eq (eglot-current-server) lse-server)))
(goto-char (point-max))
(forward-line -1)
(delete-region (line-beginning-position) (line-end-position))
(insert "t0 keep-me")
(undo-boundary)
(eglot--signal-textDocument/didChange)
(defvar lse-before (buffer-string))

(defun lse-run (title)
  (let* ((actions (eglot-code-actions (point-min) (point-max)))
         (action (seq-find (lambda (a) (equal (plist-get a :title) title)) actions))
         (command (plist-get action :command)))
    (unless action (lse-fail (concat "no code action " title)))
    (eglot-execute-command lse-server (plist-get command :command) (plist-get command :arguments))))

;; 3. Evaluate: the summary in the echo area
(lse-run "Evaluate prompt")
(lse-wait 120 "evaluate summary" (lambda () (lse-message "LSE evaluate of nums\\.prompt\\.md: ")))
(defun lse-result (regexp)
  (replace-regexp-in-string "\\`.*?\\(LSE \\(?:evaluate\\|evolve\\) of\\)" "\\1" (lse-message regexp)))
(lse-out "RESULT %s" (lse-result "LSE evaluate of nums\\.prompt\\.md: "))

;; 4. Evolve: the summary, the question, the edit (eglot asks nothing more: the docs set
;; eglot-confirm-server-initiated-edits to nil)
(lse-run "Evolve prompt")
(lse-wait 120 "evolve summary" (lambda () (lse-message "LSE evolve of nums\\.prompt\\.md: ")))
(lse-out "RESULT %s" (lse-result "LSE evolve of nums\\.prompt\\.md: "))
(lse-wait 60 "the edit" (lambda () (not (equal (buffer-string) lse-before))))
(dolist (q (reverse lse-questions)) (lse-out "ASKED %s" q))
(lse-wait 30 "applied message" (lambda () (lse-message "now holds the evolved instructions")))
(defvar lse-after (buffer-string))
(lse-out "APPLIED %s" (car (last (split-string lse-after "\n" t))))

;; 5. one undo restores the buffer as it was
(undo-boundary)
(let ((last-command nil)) (undo))
(lse-out "UNDO %s" (if (equal (buffer-string) lse-before) "restored" "different"))
(erase-buffer)
(insert lse-after)
(save-buffer)

;; 6. the tree as text
(lse-show-tree)
(with-current-buffer "*lse tree*"
  (lse-out "TREE %s" (buffer-substring (point-min) (line-end-position 1))))
(ignore-errors (eglot-shutdown lse-server))
(kill-emacs 0)
