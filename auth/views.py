"""Sign-in and sign-out."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from sqlalchemy import select
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired

from journal.db import db

from .access import current_user, login_required, login_user, logout_user, public
from .models import User
from .passwords import verify_password

bp = Blueprint("auth", __name__, template_folder="templates")


class LoginForm(FlaskForm):
    username = StringField("username", validators=[DataRequired()])
    password = PasswordField("password", validators=[DataRequired()])


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.scalar(select(User).where(User.username == form.username.data))
        if user is not None and verify_password(user.password_hash, form.password.data or ""):
            login_user(user, second_factor_ok=False)
            return redirect(url_for("auth.second_factor"))
        flash(_("Wrong username or password."), "error")
    return render_template("auth/login.html", form=form)


@bp.route("/second-factor", methods=["GET", "POST"])
@public
def second_factor() -> Any:
    if current_user() is None:
        return redirect(url_for("auth.login"))
    return render_template("auth/second_factor.html")


@bp.post("/logout")
@login_required
def logout() -> Any:
    logout_user()
    return redirect(url_for("auth.login"))


def _next_url() -> str:
    target = request.args.get("next", "")
    return (
        target
        if target.startswith("/") and not target.startswith("//")
        else url_for("journal.home")
    )
