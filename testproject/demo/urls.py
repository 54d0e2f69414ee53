from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="demo-index"),
    path("result/<str:task_id>/", views.result, name="demo-result"),
]
