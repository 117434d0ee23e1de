SELECT COUNT(*) FROM users WHERE email = ? AND role = 'admin' AND must_reset_password
