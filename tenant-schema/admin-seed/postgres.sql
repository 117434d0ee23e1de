INSERT INTO users (email, password_hash, invitation_token_hash, role, must_reset_password)
VALUES ($1, $2, $3, 'admin', TRUE)
ON CONFLICT (email) DO UPDATE SET password_hash = excluded.password_hash,
    invitation_token_hash = excluded.invitation_token_hash, role = 'admin', must_reset_password = TRUE
