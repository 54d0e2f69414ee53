from django.contrib import admin
from django.urls import include, path

import django_tasks.metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", django_tasks.metrics.view),
    path("", include("testproject.demo.urls")),
]
