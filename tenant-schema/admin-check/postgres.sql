SELECT count(*) FROM users WHERE email = $1 AND role = 'admin' AND must_reset_password
