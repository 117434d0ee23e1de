INSERT INTO users (email, password_hash, invitation_token_hash, role, must_reset_password)
VALUES (?, ?, ?, 'admin', TRUE)
ON DUPLICATE KEY UPDATE password_hash = VALUES(password_hash),
    invitation_token_hash = VALUES(invitation_token_hash), role = 'admin', must_reset_password = TRUE
